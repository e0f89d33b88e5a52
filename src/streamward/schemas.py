"""Shared pieces of the JSON API's request and response models; text fields sized by their column."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler, PlainSerializer
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, PydanticKnownError, core_schema

from streamward.edge import forbidden
from streamward.errors import BadRequest, InvalidText


def format_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Every timestamp leaves the API as UTC ISO 8601 with a trailing Z.
UtcDatetime = Annotated[datetime, PlainSerializer(format_utc, return_type=str)]


class ApiModel(BaseModel):
    """camelCase on the wire (the bintu style), snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


# --- Text sized by the column it goes into -------------------------------------------------------


# Each column's length once found, by the column's identity (a mapped attribute compares with ``==``
# into SQL, so it cannot be a dict key of its own); the entry holds the column, so its id stays its
# own. Reading ``.type`` through a mapped attribute took 6-7 us, and a login's audit entry and
# input checks read several.
_lengths: dict[int, tuple[Any, int]] = {}


def column_length(column: Any) -> int:
    """The ``String(length)`` of a column (``Model.attribute`` or ``Model.__table__.c.name``)."""
    known = _lengths.get(id(column))
    if known is not None and known[0] is column:
        return known[1]
    length = getattr(getattr(column, "type", None), "length", None)
    if not isinstance(length, int):
        raise TypeError(f"{column!r} is not a String column with a length")
    _lengths[id(column)] = (column, length)
    return length


def fit_column(value: str | None, column: Any, marker: str = "…") -> str | None:
    """``value`` cut to fit ``column``, ending with ``marker`` when cut. For records of what a client
    sent (the audit log) that must be written whatever was sent; never for data a client chose."""
    limit = column_length(column)
    if value is None or len(value) <= limit:
        return value
    return value[: limit - len(marker)] + marker


@dataclass(frozen=True)
class ColumnText:
    """Annotated metadata for a request field whose value goes into a ``String(n)`` column: the
    length limit is the column's, checked *after* ``normalise`` (lower-casing can lengthen a
    string: ``"İ".lower()`` is two characters), so the database never sees a value too long for it.

    Usage, in a request model::

        email: Annotated[str, ColumnText(Account.email, normalise=normalise_email)]
        name: Annotated[str, ColumnText(Organisation.name)] | None = None
        description: Annotated[str, ColumnText(CustomRole.description, multiline=True, min_length=0)]

    * the value handed to the service is the normalised one;
    * one-line text (the default) refuses every control character, TAB, LF and CR included;
      ``multiline=True`` keeps those three (see ``streamward.edge``). Refusals answer 400
      ``invalid_text``; too short or too long answer 422 ``validation_error`` naming the field;
    * OpenAPI shows ``minLength``/``maxLength`` (the column's).

    For a query or path parameter compared with the column, use ``column_query``/``column_path``;
    for a value that does not come through a request model (a dashboard form field handed to a
    service), ``clean``.
    """

    column: Any
    normalise: Callable[[str], str] | None = None
    multiline: bool = False
    min_length: int = 1

    @property
    def max_length(self) -> int:
        return column_length(self.column)

    def check(self, value: str) -> str:
        if self.normalise is not None:
            value = self.normalise(value)
        if forbidden(self.multiline).search(value):
            what = "a control character" if self.multiline else "a control character or a line break"
            raise PydanticCustomError(InvalidText.code, f"must not contain {what}")
        if len(value) < self.min_length:
            raise PydanticKnownError("string_too_short", {"min_length": self.min_length})
        if len(value) > self.max_length:
            raise PydanticKnownError("string_too_long", {"max_length": self.max_length})
        return value

    def clean(self, value: str, *, field: str) -> str:
        """``check`` outside a request model: the normalised value, or the same refusal as an
        AppError (400 ``invalid_text``, 400 ``validation_error`` naming ``field``)."""
        try:
            return self.check(value)
        except PydanticCustomError:
            raise InvalidText(details={"field": field}) from None
        except PydanticKnownError as error:
            raise BadRequest(
                f"{field}: {error.message()}.",
                code="validation_error",
                details={"field": field, "problem": error.message()},
            ) from None

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.update(maxLength=self.max_length, minLength=self.min_length)
        return json_schema


def column_query(column: Any, **kwargs: Any) -> Any:
    """``Query(...)`` for a parameter compared with ``column``: at most the column's length.
    (Control characters never reach it: the edge refuses them in every query string.)"""
    return Query(max_length=column_length(column), **kwargs)


def column_path(column: Any, **kwargs: Any) -> Any:
    """``Path(...)`` for a path parameter naming a row by ``column``."""
    return Path(max_length=column_length(column), **kwargs)
