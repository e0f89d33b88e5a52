"""The second step of a login, as far as second factors go: the challenge that asks for one (and
the kinds of answer the account can give), and whether an answer is right. ``authn.service`` runs the
login around it (choosing the membership, issuing the token, the audit and the failure budget)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.authn.mfa import challenges, passkeys, recovery, totp
from streamward.authn.mfa.errors import InvalidSecondFactor, MfaRequired
from streamward.authn.mfa.models import LoginChallenge, Passkey, RecoveryCode, TotpFactor
from streamward.authn.mfa.passkeys import RelyingParty
from streamward.crypto import SecretBox
from streamward.errors import BadRequest
from streamward.request_context import note_login
from streamward.schemas import format_utc
from streamward.users.models import Account, Membership

# The kinds of answer, as the 401's ``factors`` names them and ``user.login`` records them.
TOTP = "totp"
PASSKEY = "passkey"
RECOVERY_CODE = "recoveryCode"


async def required(
    session: AsyncSession,
    account: Account,
    membership: Membership,
    client_address: str,
    rp: RelyingParty | None,
) -> MfaRequired:
    """The refusal that asks for the second factor: a challenge bound to the account, the chosen
    membership and the client, and the kinds of answer the account can give."""
    # One round trip: which kinds the account has, and its passkeys (one row each; none: one row).
    has_app = exists().where(TotpFactor.account_id == Account.id, TotpFactor.confirmed_at.is_not(None))
    has_code = exists().where(RecoveryCode.account_id == Account.id, RecoveryCode.used_at.is_(None))
    rows = (
        await session.execute(
            select(has_app, has_code, Passkey)
            .select_from(Account)
            .outerjoin(Passkey, Passkey.account_id == Account.id)
            .where(Account.id == account.id)
            .order_by(Passkey.created_at, Passkey.id)
        )
    ).all()
    app, code = rows[0][0], rows[0][1]
    keys = [row[2] for row in rows if row[2] is not None] if rp is not None else []
    token, challenge = await challenges.open_challenge(
        session,
        purpose=challenges.MFA,
        client_address=client_address,
        account_id=account.id,
        membership_id=membership.id,
        webauthn=bool(keys),
    )
    kinds = [kind for kind, present in ((TOTP, app), (PASSKEY, keys), (RECOVERY_CODE, code)) if present]
    details: dict[str, Any] = {
        "challenge": token,
        "expiresAt": format_utc(challenge.expires_at),
        "factors": kinds,
    }
    if keys and rp is not None:
        details["publicKey"] = passkeys.request_options(
            rp, challenges.webauthn_challenge_bytes(challenge), keys
        )
    note_login("mfa_required")
    return MfaRequired(details=details)


@dataclass(frozen=True)
class Answer:
    """Exactly one of: a code of an authenticator app, a passkey's assertion, a recovery code."""

    code: str | None = None
    assertion: Mapping[str, Any] | None = None
    recovery_code: str | None = None

    def __post_init__(self) -> None:
        given = [a for a in (self.code, self.assertion, self.recovery_code) if a is not None]
        if len(given) != 1:
            raise BadRequest(
                "Answer with exactly one of code, assertion and recoveryCode.", code="validation_error"
            )


def answer_kind(answer: Answer) -> str:
    if answer.code is not None:
        return TOTP
    return PASSKEY if answer.assertion is not None else RECOVERY_CODE


async def verified_answer(
    session: AsyncSession,
    box: SecretBox,
    rp: RelyingParty | None,
    account: Account,
    challenge: LoginChallenge,
    apps: list[TotpFactor],
    answer: Answer,
) -> str | None:
    """The kind of the answer when it is right (and now used up: an app's step, a recovery code, a
    passkey's sign count), None when it is not."""
    if answer.code is not None:
        return TOTP if await totp.use_code(session, box, apps, answer.code) else None
    if answer.recovery_code is not None:
        used = await recovery.use_code(session, account.id, answer.recovery_code)
        return RECOVERY_CODE if used else None
    if answer.assertion is None or rp is None or not challenge.webauthn_challenge:
        return None  # no passkey was asked for when the challenge was opened
    try:
        await passkeys.verify_assertion(
            session,
            rp,
            assertion=answer.assertion,
            challenge=challenges.webauthn_challenge_bytes(challenge),
            account_id=account.id,
            require_user_verification=False,
        )
    except InvalidSecondFactor:
        return None
    return PASSKEY
