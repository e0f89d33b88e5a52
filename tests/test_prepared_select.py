"""db.PreparedSelect: a statement built once and read on the look-up pool (PostgreSQL) or through a
session gives the same rows both ways, and refuses what the pool could not run as SQLAlchemy would."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, select

from streamward.db import PreparedSelect, loaded_columns
from streamward.orgs.models import Organisation
from streamward.streams.models import Stream
from tests.conftest import Env


async def test_the_pool_and_the_session_read_the_same_values(env: Env) -> None:
    org = await env.org(packages=["transcoding", "vod"])
    prepared = PreparedSelect(
        select(*loaded_columns(Organisation)).where(Organisation.id == bindparam("organisation_id"))
    )
    values = {"organisation_id": org.id}
    pool = await env.runtime.database.lookups()
    async with env.runtime.database.session(write=True) as session:
        through_session = await prepared.rows(session, values)  # a writing session never uses the pool
    read = [tuple(row) for row in through_session]
    if pool is not None:
        assert [tuple(row) for row in await prepared.rows(pool, values)] == read
    (row,) = read
    packages = dict(zip(prepared.names, row, strict=True))["packages"]
    assert sorted(packages) == ["transcoding", "vod"]  # a JSON column, decoded on both paths


def test_what_the_pool_cannot_run_as_written_is_refused() -> None:
    with pytest.raises(ValueError, match="IN list"):
        PreparedSelect(select(Stream.id).where(Stream.state.in_(["live", "ended"])))
    with pytest.raises(ValueError, match="parameters"):  # UTCDateTime converts what it binds
        PreparedSelect(
            select(Stream.id).where(Stream.created_at < bindparam("before", type_=Stream.created_at.type))
        )
    with pytest.raises(ValueError, match="parameters"):  # so does a constant of that type
        PreparedSelect(select(Stream.id).where(Stream.created_at < datetime(2026, 1, 1, tzinfo=UTC)))
    constant = PreparedSelect(select(Stream.id).where(Stream.state != "deleted"))
    assert list(constant.constants.values()) == ["deleted"]  # sent with every read on the pool
