"""Human-friendly codes: membership numbers and referral codes without ambiguous characters."""

import secrets

# No I, O, 0, 1 (nor L): easy to read out over the phone and to type from a receipt.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
DIGITS = "23456789"


def random_code(length: int, alphabet: str = ALPHABET) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def membership_number() -> str:
    """Like 'M-4827-5936': ten digits, grouped, with the ambiguous 0/1 left out."""
    digits = random_code(8, DIGITS)
    return f"M-{digits[:4]}-{digits[4:]}"


def referral_code() -> str:
    return random_code(8)
