"""Voucher codes: 12 characters drawn with `secrets` from an alphabet without the ambiguous
0, O, 1, I and L (31^12, about 7.9e17 codes: unguessable, and easy to read from a receipt)."""

from loyalty.codes import ALPHABET, random_code

VOUCHER_CODE_LENGTH = 12


def voucher_code() -> str:
    return random_code(VOUCHER_CODE_LENGTH, ALPHABET)


def normalize_code(value: str) -> str:
    """Codes are stored upper case; people type them in any case, with stray spaces or dashes."""
    return "".join(value.split()).replace("-", "").upper()
