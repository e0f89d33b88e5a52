"""The one tenant-scoping helper: every query of tenant data goes through ``scoped`` or ``get_scoped``,
or, built once as a template (``db.PreparedSelect``), through ``scoped_template`` and ``scoped_rows``.

Another organisation's object is *not found*, never *forbidden*: its existence must not leak.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import Delete, Select, Update, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.db import LookupSource, PreparedSelect
from streamward.errors import NotFound

T = TypeVar("T")
# Any SELECT (whatever its columns), UPDATE or DELETE; the same type comes back.
Statement = TypeVar("Statement", bound=Select[*tuple[Any, ...]] | Update | Delete)


class Tenant(Protocol):
    """Whatever a query is scoped to: a Principal, or the organisation a public read names."""

    @property
    def organisation_id(self) -> uuid.UUID: ...


def scoped(statement: Statement, model: Any, principal: Tenant) -> Statement:
    # cast: mypy widens .where() on a union-bound TypeVar to the union; it returns the same kind.
    return cast(Statement, statement.where(model.organisation_id == principal.organisation_id))


# The bind parameter a scoped template's organisation is given as (by scoped_rows, and only there).
_TENANT_PARAMETER = "scoped_organisation_id"


def scoped_template(statement: Select[Any], model: Any) -> Select[Any]:
    """``scoped`` for a statement built once and read many times (``db.PreparedSelect``): the
    organisation is a parameter, which ``scoped_rows`` fills in from the principal of each read."""
    return statement.where(model.organisation_id == bindparam(_TENANT_PARAMETER))


async def scoped_rows(
    source: LookupSource, template: PreparedSelect, principal: Tenant, values: Mapping[str, Any]
) -> Sequence[Any]:
    """The rows of a ``scoped_template`` statement for the principal's organisation."""
    return await template.rows(source, {**values, _TENANT_PARAMETER: principal.organisation_id})


async def get_scoped(
    session: AsyncSession,
    model: type[T],
    object_id: uuid.UUID | str,
    principal: Tenant,
    *,
    what: str = "object",
    for_update: bool = False,
) -> T:
    try:
        key = object_id if isinstance(object_id, uuid.UUID) else uuid.UUID(str(object_id))
    except ValueError:
        raise NotFound(f"No such {what}.") from None
    statement = scoped(select(model).where(model.id == key), model, principal)  # type: ignore[attr-defined]
    if for_update:
        statement = statement.with_for_update()
    found = (await session.execute(statement)).scalar_one_or_none()
    if found is None:
        raise NotFound(f"No such {what}.")
    return found
