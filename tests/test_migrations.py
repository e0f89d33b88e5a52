"""The migrations are the only way the schema is made: they run from empty on both engines,
round-trip, and match the models exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from streamward.migrate import alembic_config, current_heads, upgrade
from streamward.models import metadata
from tests.conftest import ENGINES


@pytest.fixture(params=ENGINES)
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    url: str = request.getfixturevalue("postgres_url")
    # Take the shared test database back to empty first.
    command.downgrade(alembic_config(url), "base")
    return url


async def _diff_and_tables(url: str) -> tuple[list[object], set[str], list[str]]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:

        def inspect_sync(sync_conn):  # type: ignore[no-untyped-def]
            context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
            diff = compare_metadata(context, metadata)
            return diff, set(inspect(sync_conn).get_table_names()), context.get_current_heads()

        result = await conn.run_sync(inspect_sync)
    await engine.dispose()
    return result  # type: ignore[no-any-return]


async def test_upgrade_from_empty_matches_models_and_round_trips(empty_database: str) -> None:
    import asyncio

    await asyncio.to_thread(upgrade, empty_database)
    diff, tables, heads = await _diff_and_tables(empty_database)
    assert diff == [], f"models and migrations disagree: {diff}"
    assert {t.name for t in metadata.sorted_tables} <= tables
    assert sorted(heads) == sorted(current_heads(empty_database))

    await asyncio.to_thread(command.downgrade, alembic_config(empty_database), "base")
    _, tables, _ = await _diff_and_tables(empty_database)
    assert tables <= {"alembic_version"}
    await asyncio.to_thread(upgrade, empty_database)
    diff, _, _ = await _diff_and_tables(empty_database)
    assert diff == []
