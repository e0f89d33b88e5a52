from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from streamward.schemas import ApiModel, ColumnText, UtcDatetime
from streamward.vod.models import VodAsset


def _http_url(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError("must be an http(s) URL")
    return value


HttpUrl = Annotated[str, ColumnText(VodAsset.url, min_length=8), AfterValidator(_http_url)]


class VodImport(ApiModel):
    stream_id: uuid.UUID | None = Field(default=None, description="The stream it was made from, if any.")
    title: Annotated[str, ColumnText(VodAsset.title)]
    duration_seconds: float = Field(ge=0, le=366 * 86400)
    url: HttpUrl


class VodAssetOut(ApiModel):
    id: uuid.UUID
    stream_id: uuid.UUID | None
    title: str
    duration_seconds: float
    url: str
    source: Literal["import", "recording"]
    created_at: UtcDatetime


class VodPage(ApiModel):
    items: list[VodAssetOut]
    next_cursor: str | None
