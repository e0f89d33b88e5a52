"""Request and response shapes of the second step of a login, authenticator apps, recovery codes
and the account's overview (``api/login.py``, ``api/mfa.py``). Passkeys' are ``passkey_schemas``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import Field, model_validator

from streamward.authn.mfa.challenges import MAX_TOKEN_LENGTH
from streamward.authn.mfa.models import TotpFactor
from streamward.authn.mfa.overview import FactorView, MfaSummary
from streamward.schemas import ApiModel, ColumnText, UtcDatetime

ChallengeToken = Annotated[
    str,
    Field(
        min_length=1, max_length=MAX_TOKEN_LENGTH, description="`details.challenge` of the 401 mfa_required."
    ),
]
# Six digits, perhaps with spaces as apps show them ("123 456"); anything longer cannot be a code.
AppCode = Annotated[
    str, Field(min_length=1, max_length=16, description="The code your authenticator app shows now.")
]
RecoveryCodeText = Annotated[
    str, Field(min_length=1, max_length=32, description="One of your recovery codes (xxxxx-xxxxx).")
]


class MfaLoginRequest(ApiModel):
    """The second step of a login: the challenge and exactly one answer."""

    challenge: ChallengeToken
    code: AppCode | None = None
    assertion: dict[str, Any] | None = Field(
        default=None,
        description="A passkey's answer to `details.publicKey`: `PublicKeyCredential.toJSON()` "
        "(AuthenticationResponseJSON).",
    )
    recovery_code: RecoveryCodeText | None = None

    @model_validator(mode="after")
    def _one_answer(self) -> MfaLoginRequest:
        if sum(answer is not None for answer in (self.code, self.assertion, self.recovery_code)) != 1:
            raise ValueError("give exactly one of code, assertion and recoveryCode")
        return self


class FactorOut(ApiModel):
    id: uuid.UUID
    name: str
    created_at: UtcDatetime
    last_used_at: UtcDatetime | None

    @classmethod
    def of(cls, view: FactorView) -> FactorOut:
        return cls(id=view.id, name=view.name, created_at=view.created_at, last_used_at=view.last_used_at)


class RecoveryCodesLeft(ApiModel):
    remaining: int


class MfaStatus(ApiModel):
    enrolled: bool = Field(description="The account has a second factor (an authenticator app or a passkey).")
    required: bool = Field(description="Your organisation requires one.")
    totp: list[FactorOut]
    passkeys: list[FactorOut]
    recovery_codes: RecoveryCodesLeft

    @classmethod
    def of(cls, summary: MfaSummary) -> MfaStatus:
        return cls(
            enrolled=summary.enrolled,
            required=summary.required,
            totp=[FactorOut.of(view) for view in summary.totp],
            passkeys=[FactorOut.of(view) for view in summary.passkeys],
            recovery_codes=RecoveryCodesLeft(remaining=summary.recovery_codes_remaining),
        )


class TotpCreate(ApiModel):
    name: Annotated[str, ColumnText(TotpFactor.name)] | None = Field(
        default=None, description="What you call it, e.g. 'Phone'. Default: 'Authenticator app'."
    )
    password: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Needed (or `code`) unless your bintu token is a login of the last 10 minutes.",
    )
    code: AppCode | None = Field(default=None, description="A code of one of your authenticator apps.")


class TotpCreated(ApiModel):
    id: uuid.UUID
    name: str
    secret: str = Field(description="Base32, for typing into the app. Shown once.")
    otpauth_uri: str = Field(description="The otpauth:// URI the QR code holds.")
    qr_svg: str = Field(description="The QR code as inline SVG markup.")


class TotpConfirm(ApiModel):
    code: AppCode


class TotpConfirmed(FactorOut):
    recovery_codes: list[str] | None = Field(
        default=None,
        description="Only when this app is the account's first second factor: ten single-use codes, "
        "shown this once.",
    )


class FactorProof(ApiModel):
    """Proof that the caller is the person, not only their session: exactly one of the two."""

    password: str | None = Field(default=None, min_length=1, max_length=128)
    code: AppCode | None = None


class RecoveryCodesOut(ApiModel):
    recovery_codes: list[str] = Field(description="Ten single-use codes, shown this once.")
