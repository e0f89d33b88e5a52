"""Request and response shapes of the passkey routes (``api/passkeys.py``); a passkey is shown as
any factor (``schemas.FactorOut``), removing one takes the same proof (``schemas.FactorProof``)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import Field

from streamward.authn.mfa.challenges import MAX_TOKEN_LENGTH
from streamward.authn.mfa.models import Passkey
from streamward.authn.mfa.schemas import FactorOut
from streamward.schemas import ApiModel, ColumnText, UtcDatetime

PasskeyName = Annotated[str, ColumnText(Passkey.name)]
ChallengeToken = Annotated[
    str, Field(min_length=1, max_length=MAX_TOKEN_LENGTH, description="`challenge` of the options.")
]


class PasskeyCeremony(ApiModel):
    """A started WebAuthn ceremony; answer it within its lifetime, once."""

    challenge: str = Field(description="Send it back with the authenticator's answer.")
    expires_at: UtcDatetime
    public_key: dict[str, Any] = Field(
        description=(
            "The options for `navigator.credentials.create()` (registration) or `.get()` (sign-in), "
            "in their JSON form: `PublicKeyCredential.parseCreationOptionsFromJSON()` / "
            "`parseRequestOptionsFromJSON()` take them as they are."
        )
    )


class PasskeyRegistration(ApiModel):
    challenge: ChallengeToken
    name: PasskeyName = Field(description="What the person calls it, e.g. 'Laptop'.")
    credential: dict[str, Any] = Field(
        description="The new credential as the browser gives it: `PublicKeyCredential.toJSON()` "
        "(RegistrationResponseJSON)."
    )


class PasskeyRename(ApiModel):
    name: PasskeyName


class PasskeyRegistered(FactorOut):
    recovery_codes: list[str] | None = Field(
        default=None,
        description="Only when this passkey is the account's first second factor: ten single-use "
        "codes, shown this once.",
    )


class PasswordlessLogin(ApiModel):
    challenge: ChallengeToken
    assertion: dict[str, Any] = Field(
        description="The browser's answer to `navigator.credentials.get()`: `PublicKeyCredential."
        "toJSON()` (AuthenticationResponseJSON)."
    )
    organisation: uuid.UUID | None = Field(
        default=None, description="Needed when the account has several (409 organisation_required)."
    )
