"""Request and reply shapes of the token service; field names as DOMAIN.md documents them
(``groupid``, ``orgawide``, ``forceDisconnect``)."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from streamward.schemas import ApiModel, ColumnText
from streamward.streams.models import Stream
from streamward.streams.tags import normalise_tag

MAX_TOKEN_LENGTH = 8192
_DOMAIN = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.?$")


def _domain(value: str) -> str:
    value = value.strip().lower()
    if len(value) > 253 or not _DOMAIN.match(value):
        raise ValueError("must be a host name, optionally starting with *.")
    return value


def _address_or_network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError("must be an IP address or a CIDR network") from None


def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError("must be an IP address") from None


# Compared with the stream's columns: as long as they are, one line.
StreamName = Annotated[str, ColumnText(Stream.name)]
GroupId = Annotated[str, ColumnText(Stream.group_id)]
UnixSeconds = Annotated[int, Field(ge=0, le=2**40)]


class SplayRequest(ApiModel):
    streams: list[StreamName] | None = Field(default=None, max_length=100, description="Stream names.")
    groupid: GroupId | None = None
    orgawide: bool = False
    nbf: UnixSeconds | None = Field(default=None, description="Not before (Unix seconds); default now.")
    exp: UnixSeconds | None = Field(
        default=None, description="Expiry (Unix seconds); default 24 h after issuing."
    )
    domain: Annotated[str, AfterValidator(_domain)] | None = None
    ip: Annotated[str, AfterValidator(_address_or_network)] | None = None
    tag: Annotated[str, AfterValidator(normalise_tag)] | None = None
    user: str | None = Field(default=None, min_length=1, max_length=256)
    revocable: bool = False
    force_disconnect: bool = False


class TokenData(ApiModel):
    token: str


class SplayReply(ApiModel):
    success: bool = True
    data: TokenData


class VerifyRequest(ApiModel):
    token: str = Field(min_length=1, max_length=MAX_TOKEN_LENGTH)
    stream: StreamName | None = None
    domain: Annotated[str, AfterValidator(_domain)] | None = None
    ip: Annotated[str, AfterValidator(_address)] | None = None


class VerifyData(ApiModel):
    token: str = Field(description="The verified token, as sent (the documented reply field).")
    valid: bool = True
    claims: dict[str, Any]


class VerifyReply(ApiModel):
    success: bool = True
    data: VerifyData


class RevokeRequest(ApiModel):
    token: str = Field(min_length=1, max_length=MAX_TOKEN_LENGTH)


class PlaybackKeyRotation(ApiModel):
    revoke_old: bool = Field(
        default=False, description="Also revoke every older key: all tokens signed so far stop at once."
    )


class PlaybackKeyRotationOut(ApiModel):
    kid: str = Field(description="The new signing key.")
    retired: list[str] = Field(description="Keys that stop signing but verify until their tokens expire.")
    revoked: list[str] = Field(description="Keys that no longer verify anything.")


class Jwk(ApiModel):
    kty: str
    crv: str
    x: str
    kid: str
    alg: str
    use: str


class Jwks(ApiModel):
    keys: list[Jwk]
