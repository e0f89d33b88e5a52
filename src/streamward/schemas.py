"""Shared pieces of the JSON API's request and response models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, PlainSerializer
from pydantic.alias_generators import to_camel


def format_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Every timestamp leaves the API as UTC ISO 8601 with a trailing Z.
UtcDatetime = Annotated[datetime, PlainSerializer(format_utc, return_type=str)]


class ApiModel(BaseModel):
    """camelCase on the wire (the bintu style), snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)
