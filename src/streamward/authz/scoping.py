"""The one tenant-scoping helper: every query of tenant data goes through ``scoped`` or ``get_scoped``.

Another organisation's object is *not found*, never *forbidden*: its existence must not leak.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.authz.principal import Principal
from streamward.errors import NotFound

T = TypeVar("T")


def scoped(statement: Select[Any], model: Any, principal: Principal) -> Select[Any]:
    return statement.where(model.organisation_id == principal.organisation_id)


async def get_scoped(
    session: AsyncSession,
    model: type[T],
    object_id: uuid.UUID | str,
    principal: Principal,
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
    return found  # type: ignore[no-any-return]
