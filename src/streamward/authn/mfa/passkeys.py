"""Passkeys (WebAuthn) through the ``webauthn`` package: the relying party, registering a passkey,
asking for and verifying an assertion (as the second step of a login, or as a passwordless first
factor: ``authn.passwordless``), renaming. Removing one is ``authn.mfa.factors.remove_factor``.

The relying party is this deployment's public base URL: its host is the rp id every credential is
scoped to, its origin the only one whose pages may use them (a phishing site's origin differs, and
browsers put the origin in what the authenticator signs). A credential is the account's, and one
credential id is registered once across all accounts.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.structs import (
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialRequestOptions,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from streamward.authn.mail import MailMessage
from streamward.authn.mfa import challenges, factors, overview
from streamward.authn.mfa.errors import InvalidChallenge, InvalidSecondFactor, TooManyFactors
from streamward.authn.mfa.models import Passkey
from streamward.authz.principal import Principal
from streamward.config import Settings
from streamward.crypto import SecretBox
from streamward.db import utcnow
from streamward.errors import BadRequest, Conflict, NotFound
from streamward.limits import LoginThrottle
from streamward.users.service import share_lock_account

log = logging.getLogger(__name__)

RP_NAME = "Streamward"
# A passkey's name when the person gave none (or only spaces).
DEFAULT_NAME = "Passkey"
# How long the browser lets the person choose and touch an authenticator (a hint, in ms); the
# challenge itself lives challenges.CHALLENGE_LIFETIME.
CEREMONY_TIMEOUT_MS = 120_000
# A credential id is at most 1023 bytes (WebAuthn §5.8.3); base64url makes that 1364 characters,
# which the column holds.
MAX_CREDENTIAL_ID_BYTES = 1023
# Passkeys per account: a laptop, a phone, security keys, a password manager or two, with room to
# spare; a bound on what one session can make the account store.
MAX_PASSKEYS = 20
_DEFAULT_PORTS = {"http": 80, "https": 443}


class InvalidPasskey(BadRequest):
    """A registration response that does not verify (other origin or rp id, another challenge,
    malformed, an unsupported algorithm)."""

    code = "invalid_passkey"
    message = "The passkey could not be registered: the authenticator's answer did not verify."


class PasskeyRefused(InvalidSecondFactor):
    """An assertion that does not verify. ``account_id``: whose credential it named, when it named
    one of ours (the passwordless login audits the failure there)."""

    def __init__(self, account_id: uuid.UUID | None = None) -> None:
        super().__init__()
        self.account_id = account_id


@dataclass(frozen=True)
class RelyingParty:
    """Who the credentials are for: ``id`` (a host name, what authenticators scope credentials
    to), ``name`` (shown by the authenticator), ``origin`` (the only origin allowed to use them)."""

    id: str
    name: str
    origin: str

    @classmethod
    def from_base_url(cls, base_url: str, *, name: str = RP_NAME) -> RelyingParty:
        parts = urlsplit(base_url)
        host = (parts.hostname or "").lower()
        if not host:
            raise ValueError(f"no host in the base URL {base_url!r}")
        scheme = parts.scheme.lower()
        # The origin as a browser serialises it: lower-case host, IPv6 in brackets, no default port.
        shown = f"[{host}]" if ":" in host else host
        port = parts.port
        origin = f"{scheme}://{shown}" + (f":{port}" if port and port != _DEFAULT_PORTS.get(scheme) else "")
        return cls(id=host, name=name, origin=origin)

    @property
    def browsers_accept(self) -> bool:
        """Whether browsers will run WebAuthn ceremonies for this relying party: only under a domain
        name (never an IP address, such as the default http://127.0.0.1:8000) and in a secure
        context (https, or http on localhost). A page can say so instead of offering passkeys."""
        try:
            ipaddress.ip_address(self.id)
        except ValueError:
            local = self.id == "localhost" or self.id.endswith(".localhost")
            return self.origin.startswith("https://") or local
        return False

    @classmethod
    def from_settings(cls, settings: Settings) -> RelyingParty:
        """From the public base URL; when none is set, from http://host:port, which is where the app
        serves then (``Settings.base_url``)."""
        return cls.from_base_url(settings.base_url)


@dataclass(frozen=True)
class Ceremony:
    """A started WebAuthn ceremony: the challenge token the client answers with, when it expires,
    and the options for ``navigator.credentials.create()`` / ``.get()`` (their JSON form)."""

    token: str
    expires_at: datetime
    public_key: dict[str, Any]


@dataclass(frozen=True)
class Registered:
    passkey: Passkey
    # The account's first factor: its ten recovery codes, shown this once.
    recovery_codes: list[str] | None
    notice: MailMessage  # tells the owner; to send after the commit


def _json(options: PublicKeyCredentialCreationOptions | PublicKeyCredentialRequestOptions) -> dict[str, Any]:
    # options_to_json: plain JSON types (base64url strings, ints for the algorithm enums).
    loaded: dict[str, Any] = json.loads(options_to_json(options))
    return loaded


def _transports(passkey: Passkey) -> list[AuthenticatorTransport]:
    known = {transport.value for transport in AuthenticatorTransport}
    return [AuthenticatorTransport(t) for t in passkey.transports.split(",") if t in known]


def _descriptors(passkeys: Sequence[Passkey]) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(id=base64url_to_bytes(p.credential_id), transports=_transports(p))
        for p in passkeys
    ]


async def passkeys_of(session: AsyncSession, account_id: uuid.UUID) -> list[Passkey]:
    """The account's passkeys, oldest first."""
    statement = (
        select(Passkey).where(Passkey.account_id == account_id).order_by(Passkey.created_at, Passkey.id)
    )
    return list((await session.execute(statement)).scalars())


async def own_passkey(session: AsyncSession, principal: Principal, passkey_id: uuid.UUID) -> Passkey:
    """The caller's passkey ``passkey_id``; another account's (or any, for the API key, which has no
    account) is not found, like an unknown one: as ``factors.remove_factor`` finds it."""
    passkey = await session.get(Passkey, passkey_id)
    if passkey is None or principal.account_id is None or passkey.account_id != principal.account_id:
        raise NotFound()
    return passkey


# --- registration ------------------------------------------------------------------------------


async def registration_options(
    session: AsyncSession,
    principal: Principal,
    rp: RelyingParty,
    *,
    client_address: str,
    throttle: LoginThrottle,
    box: SecretBox,
    password: str | None = None,
    code: str | None = None,
) -> Ceremony:
    """Start registering a passkey for the caller's account, who must be allowed to add a factor
    (``factors.ensure_may_add``: a fresh sign-in, or the password or an app code). A discoverable
    credential (so it can sign in without an email), user verification preferred (required only for
    passwordless use), and the account's passkeys excluded: the authenticator refuses to make a
    second one."""
    account = await factors.ensure_may_add(session, principal, throttle, box, password=password, code=code)
    account_id = account.id
    token, challenge = await challenges.open_challenge(
        session,
        purpose=challenges.PASSKEY_REGISTRATION,
        client_address=client_address,
        account_id=account_id,
        membership_id=principal.membership_id,
        webauthn=True,
    )
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_name=account.email,
        user_display_name=account.email,
        # The user handle: what a discoverable credential hands back at a passwordless login.
        # The account id is opaque and stable (an email can change).
        user_id=account.id.bytes,
        challenge=challenges.webauthn_challenge_bytes(challenge),
        timeout=CEREMONY_TIMEOUT_MS,
        exclude_credentials=_descriptors(await passkeys_of(session, account_id)),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
    )
    return Ceremony(token, challenge.expires_at, _json(options))


async def register(
    session: AsyncSession,
    principal: Principal,
    rp: RelyingParty,
    *,
    challenge_token: str,
    name: str,
    credential: Mapping[str, Any],
    client_address: str,
) -> Registered:
    """Verify the authenticator's answer to ``registration_options`` and store the passkey. Adding a
    factor ends the account's other sessions (``factors.factor_added``). A credential registered
    already (to this account or another) is refused with 409: excludeCredentials asks the
    authenticator not to make one twice, the unique credential id makes sure."""
    account_id = overview.account_id_of(principal)
    challenge = await challenges.take_challenge(
        session, challenge_token, purpose=challenges.PASSKEY_REGISTRATION, client_address=client_address
    )
    if challenge.account_id != account_id:
        raise InvalidChallenge()
    try:
        parsed = parse_registration_credential_json(dict(credential))
        verified = verify_registration_response(
            credential=parsed,
            expected_challenge=challenges.webauthn_challenge_bytes(challenge),
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
        )
    except Exception as error:  # anything the client sent that does not parse or verify
        log.info("passkey registration refused: %s", error)
        raise InvalidPasskey() from None
    if verified.credential_id != parsed.raw_id or len(verified.credential_id) > MAX_CREDENTIAL_ID_BYTES:
        raise InvalidPasskey()
    credential_id = bytes_to_base64url(verified.credential_id)
    if await session.scalar(select(Passkey.id).where(Passkey.credential_id == credential_id)):
        raise Conflict("This passkey is registered already.")
    held = await session.scalar(
        select(func.count()).select_from(Passkey).where(Passkey.account_id == account_id)
    )
    if (held or 0) >= MAX_PASSKEYS:
        raise TooManyFactors("This account has as many passkeys as it may have; remove one first.")
    await challenges.consume(session, challenge)
    passkey = Passkey(
        account_id=account_id,
        name=name.strip() or DEFAULT_NAME,
        credential_id=credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=",".join(t.value for t in parsed.response.transports or []),
        created_at=utcnow(),
    )
    session.add(passkey)
    try:
        await session.flush()
    except IntegrityError:  # the same credential, registered by a concurrent request
        raise Conflict("This passkey is registered already.") from None
    added = await factors.factor_added(session, principal, kind="passkey", name=passkey.name)
    return Registered(passkey, added.recovery_codes, added.notice)


async def rename(session: AsyncSession, principal: Principal, passkey_id: uuid.UUID, *, name: str) -> Passkey:
    passkey = await own_passkey(session, principal, passkey_id)
    passkey.name = name.strip() or DEFAULT_NAME
    await session.flush()
    return passkey


# --- assertions --------------------------------------------------------------------------------


def request_options(
    rp: RelyingParty, challenge: bytes, credentials: Sequence[Passkey], *, user_verification: bool = False
) -> dict[str, Any]:
    """PublicKeyCredentialRequestOptions (JSON) asking for one of ``credentials`` to sign
    ``challenge``: the second step of a login (user verification preferred: the password was the
    first factor). No credentials: any discoverable one of this relying party (passwordless)."""
    options = generate_authentication_options(
        rp_id=rp.id,
        challenge=challenge,
        timeout=CEREMONY_TIMEOUT_MS,
        allow_credentials=_descriptors(credentials),
        user_verification=(
            UserVerificationRequirement.REQUIRED
            if user_verification
            else UserVerificationRequirement.PREFERRED
        ),
    )
    return _json(options)


def _parsed_assertion(assertion: Mapping[str, Any]) -> AuthenticationCredential:
    try:
        parsed = parse_authentication_credential_json(dict(assertion))
    except Exception as error:
        log.info("passkey assertion refused: %s", error)
        raise PasskeyRefused() from None
    if len(parsed.raw_id) > MAX_CREDENTIAL_ID_BYTES:
        raise PasskeyRefused()
    return parsed


async def verify_assertion(
    session: AsyncSession,
    rp: RelyingParty,
    *,
    assertion: Mapping[str, Any],
    challenge: bytes,
    account_id: uuid.UUID | None,
    require_user_verification: bool,
) -> Passkey:
    """The passkey that signed ``challenge`` in ``assertion`` (an AuthenticationResponseJSON), its
    sign count and last use updated. ``account_id``: the credential must be that account's (the
    second step of a login); None: any account's (passwordless: the credential names the account).

    Refused (PasskeyRefused, 401 invalid_second_factor): not parseable, a credential unknown to us
    or another account's, a user handle that is not the credential's account, another challenge,
    origin or rp id, no user presence, no user verification when required, a bad signature, or a
    sign count that did not grow (a cloned authenticator; counts of 0 mean the authenticator keeps
    none). The caller consumes the challenge (``challenges.consume``) so that it answers once."""
    parsed = _parsed_assertion(assertion)
    passkey = (
        await session.execute(
            select(Passkey).where(Passkey.credential_id == bytes_to_base64url(parsed.raw_id))
        )
    ).scalar_one_or_none()
    if passkey is None or (account_id is not None and passkey.account_id != account_id):
        raise PasskeyRefused(account_id)
    user_handle = parsed.response.user_handle
    if user_handle is not None and user_handle != passkey.account_id.bytes:
        raise PasskeyRefused(passkey.account_id)
    try:
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=require_user_verification,
        )
    except Exception as error:
        log.info("passkey assertion refused: %s", error)
        raise PasskeyRefused(passkey.account_id) from None
    if account_id is None and await share_lock_account(session, passkey.account_id) is None:
        # Passwordless: the login holds no lock on the account yet, and takes its share lock before
        # the passkey's row (below), as every sign-in does: a member's removal takes the account and
        # then the passkey through the account's deletion; the other order deadlocked. Gone: refused.
        raise PasskeyRefused(None)
    # Compare-and-set on the count verified against: of two concurrent uses, one moves it.
    now = utcnow()
    moved = await session.execute(
        update(Passkey)
        .where(Passkey.id == passkey.id, Passkey.sign_count == passkey.sign_count)
        .values(sign_count=verified.new_sign_count, last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise PasskeyRefused(passkey.account_id)
    set_committed_value(passkey, "sign_count", verified.new_sign_count)
    set_committed_value(passkey, "last_used_at", now)
    return passkey
