"""Secret handling: opaque tokens, their SHA-256 digests, and AES-GCM for secrets that must be shown again."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TOKEN_BYTES = 32  # 256 random bits; the floor the API promises is 128


def new_token(prefix: str) -> str:
    """An opaque credential. The prefix tells secret scanners (and people) what leaked."""
    return f"{prefix}_{secrets.token_urlsafe(TOKEN_BYTES)}"


def digest(token: str) -> str:
    """SHA-256 hex: what we store and look up. 256 random bits need neither salt nor a slow hash."""
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class SecretBox:
    """AES-256-GCM under a key derived from STREAMWARD_SECRET_KEY, one derived key per purpose.

    Output: ``v1.<base64(nonce || ciphertext)>``; the purpose is bound as associated data, so a value
    sealed for one column cannot be opened as another.
    """

    def __init__(self, secret_key: bytes) -> None:
        self._secret_key = secret_key
        # One derived key per purpose, derived once: the delivery worker opens a secret per event.
        self._aeads: dict[str, AESGCM] = {}

    def _aead(self, purpose: str) -> AESGCM:
        if purpose not in self._aeads:
            kdf = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=b"streamward/secretbox", info=purpose.encode()
            )
            self._aeads[purpose] = AESGCM(kdf.derive(self._secret_key))
        return self._aeads[purpose]

    def seal(self, plaintext: str, *, purpose: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead(purpose).encrypt(nonce, plaintext.encode(), purpose.encode())
        return "v1." + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str, *, purpose: str) -> str:
        version, _, body = sealed.partition(".")
        if version != "v1":
            raise ValueError("unknown sealed-secret version")
        raw = base64.urlsafe_b64decode(body)
        return self._aead(purpose).decrypt(raw[:12], raw[12:], purpose.encode()).decode()
