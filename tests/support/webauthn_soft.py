"""A software WebAuthn authenticator and the browser around it, for API-level passkey tests.

It does what a platform authenticator and ``navigator.credentials`` do together: ES256 credentials
on EC P-256, "none" attestation, authenticatorData (rpIdHash | flags | signCount | attested
credential data with the COSE key), clientDataJSON (type, challenge, origin), and the assertion
signature over ``authenticatorData || SHA-256(clientDataJSON)``; and it answers in the JSON shapes
browsers send (``PublicKeyCredential.toJSON()``: base64url fields, ``"response": {...}``,
``"type": "public-key"``, ``"clientExtensionResults": {}``).

The knobs let a test play a phishing page (``origin``), an authenticator asked for another relying
party (``rp_id``), a cloned authenticator (``sign_count``), or one that did not verify the user
(``user_verified=False``). Encoding uses ``cbor2`` and ``cryptography`` directly, not the
``webauthn`` package under test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

# authenticatorData flags (WebAuthn §6.1).
USER_PRESENT = 0x01
USER_VERIFIED = 0x04
BACKUP_ELIGIBLE = 0x08
BACKED_UP = 0x10
ATTESTED_CREDENTIAL_DATA = 0x40

ES256 = -7


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CredentialExcluded(Exception):
    """The browser's InvalidStateError: the authenticator holds a credential the relying party
    listed in excludeCredentials, so it refuses to make another."""


@dataclass
class SoftCredential:
    """One discoverable credential (a passkey) held by the authenticator."""

    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0

    @property
    def id(self) -> str:
        return b64url(self.credential_id)

    def cose_public_key(self) -> bytes:
        numbers = self.private_key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,  # kty: EC2
                3: ES256,  # alg
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )


@dataclass
class SoftAuthenticator:
    """A platform authenticator in a browser showing a page of ``origin``.

    ``counts_signatures``: each use raises the credential's sign count (as security keys and
    Chrome's virtual authenticator do); without it the count stays 0 (as synced passkeys do).
    """

    origin: str
    counts_signatures: bool = True
    backed_up: bool = True
    aaguid: bytes = bytes(16)
    transports: tuple[str, ...] = ("internal", "hybrid")
    credentials: list[SoftCredential] = field(default_factory=list)

    # --- navigator.credentials.create() --------------------------------------------------------

    def create(
        self,
        options: Mapping[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        user_verified: bool = True,
        ignore_exclude: bool = False,
        credential: SoftCredential | None = None,
    ) -> dict[str, Any]:
        """A RegistrationResponseJSON for PublicKeyCredentialCreationOptions JSON. ``credential``
        presents one already made (a client that ignores excludeCredentials, with
        ``ignore_exclude``) instead of a new one."""
        rp_id = rp_id or options["rp"]["id"]
        if not ignore_exclude:
            excluded = {entry["id"] for entry in options.get("excludeCredentials", [])}
            if any(held.id in excluded for held in self.credentials if held.rp_id == rp_id):
                raise CredentialExcluded
        if credential is None:
            credential = SoftCredential(
                credential_id=os.urandom(32),
                private_key=ec.generate_private_key(ec.SECP256R1()),
                rp_id=rp_id,
                user_handle=from_b64url(options["user"]["id"]),
            )
            self.credentials.append(credential)
        flags = USER_PRESENT | ATTESTED_CREDENTIAL_DATA | (USER_VERIFIED if user_verified else 0)
        attested = (
            self.aaguid
            + struct.pack(">H", len(credential.credential_id))
            + credential.credential_id
            + credential.cose_public_key()
        )
        auth_data = self._auth_data(rp_id, flags, credential.sign_count) + attested
        attestation_object = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        return {
            "id": credential.id,
            "rawId": credential.id,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation_object),
                "transports": list(self.transports),
                "publicKeyAlgorithm": ES256,
                "authenticatorData": b64url(auth_data),
            },
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
        }

    # --- navigator.credentials.get() -----------------------------------------------------------

    def get(
        self,
        options: Mapping[str, Any],
        *,
        credential: SoftCredential | None = None,
        origin: str | None = None,
        rp_id: str | None = None,
        user_verified: bool = True,
        sign_count: int | None = None,
        challenge: str | None = None,
    ) -> dict[str, Any]:
        """An AuthenticationResponseJSON for PublicKeyCredentialRequestOptions JSON: signed by
        ``credential``, else by the first one allowCredentials names, else (discoverable) by the
        newest one held for the relying party. ``sign_count`` reports that count instead of the
        next one; ``challenge`` signs another challenge than the options'."""
        credential = credential or self._choose(options)
        rp_id = rp_id or options["rpId"]
        if sign_count is None:
            if self.counts_signatures:
                credential.sign_count += 1
            sign_count = credential.sign_count
        flags = USER_PRESENT | (USER_VERIFIED if user_verified else 0)
        auth_data = self._auth_data(rp_id, flags, sign_count)
        client_data = self._client_data("webauthn.get", challenge or options["challenge"], origin)
        signature = credential.private_key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": credential.id,
            "rawId": credential.id,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(credential.user_handle),
            },
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
        }

    def _choose(self, options: Mapping[str, Any]) -> SoftCredential:
        allowed = [entry["id"] for entry in options.get("allowCredentials", [])]
        held = [c for c in self.credentials if c.rp_id == options["rpId"]]
        if allowed:
            held = [c for c in held if c.id in allowed]
        if not held:
            raise LookupError("the authenticator holds no credential for this request")
        return held[-1]

    def _auth_data(self, rp_id: str, flags: int, sign_count: int) -> bytes:
        if self.backed_up:
            flags |= BACKUP_ELIGIBLE | BACKED_UP
        return hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + struct.pack(">I", sign_count)

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        # Compact JSON in the browser's key order; the server must parse it, not compare it.
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin or self.origin, "crossOrigin": False},
            separators=(",", ":"),
        ).encode()
