"""Human-friendly codes: membership numbers and referral codes without ambiguous characters.

A membership number is "M-" and eight digits from 2 to 9 in two groups of four
(`M-4827-5936`); a referral code is eight characters of `ALPHABET`.
"""

import functools
import secrets

# No I, L, O, 0 or 1: easy to read out over the phone and to type from a receipt.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
DIGITS = "23456789"


def random_code(length: int, alphabet: str = ALPHABET) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def membership_number() -> str:
    """Like 'M-4827-5936': eight digits, 2 to 9 only (no 0 or 1 to mistake for O or I),
    grouped by four so that they can be read out."""
    digits = random_code(8, DIGITS)
    return f"M-{digits[:4]}-{digits[4:]}"


def referral_code() -> str:
    """Eight of the 31 characters of `ALPHABET`: short to type, 31^8 (about 850 billion) codes."""
    return random_code(8)


def random_codes(count: int, length: int, alphabet: str = ALPHABET) -> list[str]:
    """`count` codes like `random_code`'s, from one read of the system's random source per
    round instead of one per character: an import draws thousands at a time. Bytes at or
    above the largest multiple of the alphabet's size are dropped, so every character stays
    equally likely."""
    table, dropped = _byte_table(alphabet)
    text = ""
    while len(text) < count * length:
        # bytes.translate maps and drops in C (a Python loop per byte cost an import more
        # than the members' other checks)
        text += secrets.token_bytes(count * length + 64).translate(table, dropped).decode()
    return [text[i : i + length] for i in range(0, count * length, length)]


@functools.cache
def _byte_table(alphabet: str) -> tuple[bytes, bytes]:
    """Each byte below the largest multiple of the alphabet's size mapped to its character
    (`alphabet[byte % size]`), and the bytes at or above it, which are dropped."""
    size = len(alphabet)
    limit = 256 - 256 % size
    table = bytes(ord(alphabet[b % size]) if b < limit else 0 for b in range(256))
    return table, bytes(range(limit, 256))


def membership_numbers(count: int) -> list[str]:
    """`count` numbers like `membership_number`'s (not necessarily distinct)."""
    return [f"M-{d[:4]}-{d[4:]}" for d in random_codes(count, 8, DIGITS)]


def referral_codes(count: int) -> list[str]:
    """`count` codes like `referral_code`'s (not necessarily distinct)."""
    return random_codes(count, 8)
