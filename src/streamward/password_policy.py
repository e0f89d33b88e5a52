"""Password policy: 8 to 128 characters, used whole (no truncation), not one of the most common."""

from __future__ import annotations

from streamward.errors import BadRequest

MIN_LENGTH = 8
MAX_LENGTH = 128

# The commonest passwords of public breach corpora that meet the length rule; lower-cased.
_COMMON = frozenset(
    [
        "12345678",
        "123456789",
        "1234567890",
        "password",
        "password1",
        "password12",
        "password123",
        "qwertyuiop",
        "qwerty123",
        "iloveyou",
        "11111111",
        "00000000",
        "12341234",
        "87654321",
        "abcd1234",
        "1q2w3e4r",
        "1qaz2wsx",
        "qwertyui",
        "asdfghjk",
        "sunshine",
        "princess",
        "football",
        "baseball",
        "superman",
        "starwars",
        "welcome1",
        "welcome123",
        "letmein1",
        "trustno1",
        "passw0rd",
        "p@ssw0rd",
        "p@ssword",
        "admin123",
        "administrator",
        "changeme",
        "changeme1",
        "monkey123",
        "dragon123",
        "master123",
        "whatever",
        "123123123",
        "987654321",
        "qazwsxedc",
        "zaq12wsx",
        "1234qwer",
        "q1w2e3r4",
        "q1w2e3r4t5",
        "michael1",
        "jennifer",
        "liverpool",
        "chelsea1",
        "computer",
        "internet",
        "mustang1",
        "shadow12",
        "michelle",
    ]
)


class WeakPassword(BadRequest):
    code = "weak_password"


def check_password(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"The password needs at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"The password may have at most {MAX_LENGTH} characters.")
    if password.lower() in _COMMON:
        raise WeakPassword("This password is among the most common ones; choose another.")
