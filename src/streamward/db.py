"""Engine, session factories, declarative base, column types and post-commit hooks.

Services only flush; whoever opened the session commits it (the request's session dependency in
``web.session``, the delivery worker, the CLI), once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import asyncpg
from sqlalchemy import JSON, DateTime, MetaData, Select, Text, event
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from streamward.config import make_private_dir
from streamward.lookup_pool import SHARED_SERVER_SETTINGS, LookupPool

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both engines (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


_id_lock = threading.Lock()
_last_id_time = 0  # milliseconds << 12 | sequence, of the last id this process made


def new_id() -> uuid.UUID:
    """A UUIDv7: time-ordered, so primary-key order is creation order (keyset pagination, index locality).

    Within one process ids are strictly increasing (RFC 9562, method 3): the 12 bits after the
    millisecond timestamp count up within a millisecond, so two rows made in the same millisecond
    still sort in creation order.
    """
    global _last_id_time
    with _id_lock:
        stamp = (time.time_ns() // 1_000_000) << 12
        _last_id_time = max(stamp, _last_id_time + 1)
        millis, sequence = _last_id_time >> 12, _last_id_time & 0xFFF
    rand = int.from_bytes(os.urandom(8), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= sequence << 64
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


WRITE_OPTION = "streamward_write"


def prepare_sqlite_file(url: str) -> None:
    """Create the SQLite database file, and its folder, for this user only (0600 / 0700) before
    SQLite first opens it: SQLite would create it with the umask's mode (commonly 0644), and it holds
    password hashes, token digests and sealed secrets. SQLite gives its -wal and -shm files the
    database file's mode. A file that exists keeps its mode; a warning says when others can read it."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    make_private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning(
                "the database file %s can be read by other users (mode %o): chmod 600 it and its "
                "-wal and -shm files",
                path,
                mode,
            )


def create_engine(url: str, *, pool_size: int = 20, echo: bool = False) -> AsyncEngine:
    # hide_parameters: a traceback of a failed statement must not carry what a client typed
    # (emails, tokens' digests) into the log.
    if url.startswith("sqlite"):
        prepare_sqlite_file(url)
        engine = create_async_engine(url, echo=echo, hide_parameters=True, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        url,
        echo=echo,
        hide_parameters=True,
        pool_size=pool_size,
        # A little room for bursts; overflow connections are closed on return, so a large overflow
        # turns a steady load into a stream of new connections.
        max_overflow=max(2, pool_size // 4),
        pool_pre_ping=False,
        pool_recycle=1800,
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL, foreign keys, and explicit BEGIN so that writing transactions take the lock up front.

    With SQLite's default deferred BEGIN, two transactions that both read and then write can fail
    with "database is locked" instead of waiting; ``BEGIN IMMEDIATE`` for writers makes them queue
    (busy timeout) while readers stay concurrent under WAL.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let us emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Readers run each statement in its own implicit transaction (see Database.reader).
        if conn.get_execution_options().get(WRITE_OPTION, False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")


# Session.info key under which a session finds its Database (direct_reader needs its look-up pool).
_DATABASE_KEY = "streamward.database"


class _LookupConnection(asyncpg.Connection):  # type: ignore[misc]
    """A look-up connection runs single prepared statements in autocommit (SELECTs, and a password
    login's one-statement write) and never changes session state (no SET, LISTEN, advisory lock,
    open cursor), so asyncpg's reset query on every release to the pool (RESET ALL; CLOSE ALL;
    UNLISTEN *...) would be a round trip that resets nothing."""

    def get_reset_query(self) -> str:
        return ""


def lookup_pool_size(pool_size: int) -> int:
    """The share of the connection budget given to reading requests' statements (credential and
    playback-token look-ups, list pages): half. Each holds its connection for one statement, but a
    list page of a large organisation takes milliseconds, and a reading request waits for a free
    connection to authenticate: with a fifth (four by default), four slow pages at once would hold
    up every other reading request's credential check."""
    return max(2, pool_size // 2)


class Database:
    """The engine and the two session factories of one process, and on PostgreSQL a small pool of
    raw asyncpg connections for the look-ups every request makes (credentials, playback-token state).

    Those look-ups bypass SQLAlchemy: measured on ``GET /api/organisation``, checking a connection out
    of SQLAlchemy's pool through a session, and committing and returning it, cost more CPU than the
    query, and held a pooled connection for the whole request. The connection budget stays
    ``pool_size`` (plus overflow): the look-up pool's share is taken from it.
    """

    def __init__(self, url: str, *, pool_size: int = 20) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._lookup_size = 0 if self.is_sqlite else lookup_pool_size(pool_size)
        self.engine = create_engine(url, pool_size=max(1, pool_size - self._lookup_size))
        self._lookups: LookupPool | None = None
        self._lookups_lock = asyncio.Lock()
        # Read-only requests (GET, HEAD) skip BEGIN/COMMIT: under READ COMMITTED (PostgreSQL) every
        # statement sees its own snapshot anyway, so the transaction only added two round trips.
        reader_engine = (
            self.engine if self.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        # Post-commit hooks see each committed session's ``info``: a feature marks there what it
        # wants done once its transaction is durable (the outbox wakes its worker), and registers
        # the hook once per process (``after_commit``); this module knows none of them.
        self.commit_hooks: list[Callable[[dict[Any, Any]], None]] = []
        session_class = type("StreamwardSession", (Session,), {})
        event.listen(session_class, "after_commit", self._after_commit)
        info = {_DATABASE_KEY: self}
        self.reader = async_sessionmaker(
            reader_engine, expire_on_commit=False, sync_session_class=session_class, info=info
        )
        self.writer = async_sessionmaker(
            self.engine.execution_options(**{WRITE_OPTION: True}),
            expire_on_commit=False,
            sync_session_class=session_class,
            info=info,
        )

    def after_commit(self, hook: Callable[[dict[Any, Any]], None]) -> None:
        """Run ``hook(session.info)`` after every transaction of this database commits."""
        self.commit_hooks.append(hook)

    def _after_commit(self, session: Session) -> None:
        for hook in self.commit_hooks:
            hook(session.info)

    def session(self, *, write: bool = True) -> AsyncSession:
        return (self.writer if write else self.reader)()

    async def lookups(self) -> LookupPool | None:
        """The look-up pool (PostgreSQL only), opened on first use."""
        if self.is_sqlite:
            return None
        if self._lookups is None:
            async with self._lookups_lock:
                if self._lookups is None:
                    # A third of the share runs shared look-ups (lookup_pool): at most two
                    # statements of each kind are under way at once.
                    shared_size = max(1, self._lookup_size // 3)
                    connect = _asyncpg_connect_args(self.url)
                    pool = await asyncpg.create_pool(
                        min_size=1,
                        max_size=self._lookup_size - shared_size,
                        connection_class=_LookupConnection,
                        max_inactive_connection_lifetime=300,
                        **connect,
                    )
                    shared = await asyncpg.create_pool(
                        min_size=1,
                        max_size=shared_size,
                        connection_class=_LookupConnection,
                        max_inactive_connection_lifetime=300,
                        server_settings=SHARED_SERVER_SETTINGS,
                        **connect,
                    )
                    self._lookups = LookupPool(pool, shared)
        return self._lookups

    async def dispose(self) -> None:
        if self._lookups is not None:
            await self._lookups.close()
            self._lookups = None
        await self.engine.dispose()


def _asyncpg_connect_args(url: str) -> dict[str, Any]:
    """asyncpg's own connection arguments for a ``postgresql+asyncpg://`` URL, as SQLAlchemy's dialect
    would pass them (host, port, user, password, database, and ``ssl`` from the query string)."""
    parsed = make_url(url)
    args: dict[str, Any] = {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "database": parsed.database,
    }
    ssl = parsed.query.get("ssl") or parsed.query.get("sslmode")
    if ssl:
        args["ssl"] = ssl if isinstance(ssl, str) else ssl[0]
    return {name: value for name, value in args.items() if value is not None}


def is_writing(session: AsyncSession) -> bool:
    """Whether the session belongs to a writing request (it holds, or will take, a write transaction)."""
    return bool(session.get_bind().get_execution_options().get(WRITE_OPTION, False))


# Where a per-request look-up reads: the request's session, or (a reading request on PostgreSQL that
# opened no session) the database's look-up pool itself.
LookupSource: TypeAlias = AsyncSession | LookupPool


async def lookup_reader(source: LookupSource) -> LookupPool | None:
    """The look-up pool to run a per-request look-up on, or None to run it in the session."""
    if isinstance(source, AsyncSession):
        return await direct_reader(source)
    return source


async def direct_reader(session: AsyncSession) -> LookupPool | None:
    """For a *reading* session on PostgreSQL, the look-up pool of the session's Database
    (``fetchrow`` takes a connection for one statement and gives it back), for the few queries that
    run on every request (credential and playback-token checks): there, SQLAlchemy's execution layer
    and a connection checked out for the whole request cost more than the query. They read committed
    rows, as the session would (READ COMMITTED), so a revocation committed by any process applies to
    the next request.

    None elsewhere: on SQLite; and for a writing session, whose request changes what it loads (the
    Principal's organisation, say) and must find it attached to its own transaction."""
    database = session.info.get(_DATABASE_KEY)
    if not isinstance(database, Database) or is_writing(session):
        return None
    return await database.lookups()


async def pool_apart(session: AsyncSession) -> LookupPool | None:
    """On PostgreSQL, the look-up pool of the session's Database, for a statement a *writing* request
    runs apart from its own transaction (each statement there commits on its own): a login's read
    before its hash or code, and its one-statement write (``authn.login_statements``). None on
    SQLite. Such statements come before the request's transaction: one begun already would hold
    what it did until after them, and they take no account of it."""
    database = session.info.get(_DATABASE_KEY)
    if not isinstance(database, Database) or database.is_sqlite:
        return None
    if session.in_transaction():
        raise RuntimeError("a statement apart from the request's transaction must come before it begins")
    return await database.lookups()


async def rows_apart(
    session: AsyncSession, statement: PreparedSelect, values: Mapping[str, Any]
) -> Sequence[Any]:
    """Read ``statement`` outside the request's transaction: on the look-up pool (PostgreSQL), or in a
    reading session of its own (SQLite: a writing session's first statement takes the database's one
    write lock, ``BEGIN IMMEDIATE``, which a read before a password hash would hold for the hash)."""
    pool = await pool_apart(session)
    if pool is not None:
        return await statement.rows(pool, values)
    database = session.info.get(_DATABASE_KEY)
    if not isinstance(database, Database):
        return await statement.rows(session, values)
    reader = database.session(write=False)
    try:
        return await statement.rows(reader, values)
    finally:
        await release(reader)


def dialect_name(source: LookupSource) -> str:
    """The SQL dialect a look-up source speaks: the look-up pool is PostgreSQL's."""
    if isinstance(source, AsyncSession):
        return source.get_bind().dialect.name
    return "postgresql"


_POOL_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]


class PreparedSelect:
    """A SELECT built once, with named bind parameters, read where a reading request reads: as one
    prepared statement on the look-up pool (a reading request on PostgreSQL), else through the
    session (SQLite; a writing request, which must see its own changes).

    For the lists that a page of fifty rows is read from: building the statement for every request,
    then SQLAlchemy's execution of it (compile-cache look-up, cursor, result and row objects through
    its greenlet bridge) measured three times the CPU of asyncpg running the same SQL (py-spy on
    ``GET /api/user?limit=50``). Each shape of a query (which filters it has) is its own instance,
    kept by its builder.

    Rows are read by position (``row[0]``), which asyncpg's records and SQLAlchemy's rows both
    offer (``names`` are the columns' keys; a template reads ``row.name`` on either, Jinja falling
    back to ``row["name"]`` on a record, but Python code reads positions), and hold the same values
    either way: JSON columns are decoded here, and otherwise the statement may only take parameters
    and select columns that the driver handles natively, as the constructor checks.
    """

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        compiled = statement.compile(dialect=_POOL_DIALECT)
        assert isinstance(compiled, SQLCompiler)
        converted = [name for name, processor in compiled._bind_processors.items() if processor]
        if converted:
            raise ValueError(f"parameters the driver cannot take as they are: {converted}")
        self.names = tuple(column[0] for column in compiled._result_columns)
        self._json_positions = []
        for position, column in enumerate(compiled._result_columns):
            name, column_type = column[0], column[3]
            if isinstance(column_type, JSON):
                self._json_positions.append(position)  # text from the look-up pool: decoded in rows()
                continue
            # UTCDateTime only makes naive values aware; asyncpg's timestamptz values are aware UTC.
            if isinstance(column_type, UTCDateTime):
                continue
            if column_type.dialect_impl(_POOL_DIALECT).result_processor(_POOL_DIALECT, None) is not None:
                raise ValueError(f"column {name} needs SQLAlchemy's conversion: cast it in the statement")
        if "POSTCOMPILE" in compiled.string:
            raise ValueError("an IN list of bound values: write the list's values as constants")
        self.sql = compiled.string
        self.parameters = tuple(compiled.positiontup or ())
        # Values written into the statement as constants (``Stream.state != "deleted"``).
        self.constants = {
            name: compiled.binds[name].value for name in self.parameters if not compiled.binds[name].required
        }

    async def rows(self, source: LookupSource, values: Mapping[str, Any]) -> Sequence[Any]:
        reader = await lookup_reader(source)
        if reader is not None:
            given = {**values, **self.constants}  # a caller's value never replaces a constant
            rows: Sequence[Any] = await reader.fetch(self.sql, *[given[name] for name in self.parameters])
            if self._json_positions:
                return [self._decoded(row) for row in rows]
            return rows
        assert isinstance(source, AsyncSession)
        read: Sequence[Any] = (await source.execute(self.statement, dict(values))).all()
        return read

    def _decoded(self, row: Sequence[Any]) -> tuple[Any, ...]:
        values = list(row)
        for position in self._json_positions:
            if isinstance(values[position], str):  # SQLAlchemy's dialect registers no codec on this pool
                values[position] = json.loads(values[position])
        return tuple(values)


class json_text_array(FunctionElement[str]):  # noqa: N801 (a SQL function, named as one)
    """The values of a one-column subquery as the text of a JSON array (``[]`` when there are none),
    in the column's order on PostgreSQL and in no promised order on SQLite: readers sort.

    Usage: ``select(json_text_array(Tag.name)).where(Tag.stream_id == Stream.id).scalar_subquery()``,
    which puts a row's tags in the row itself instead of in a second query."""

    type = Text()
    inherit_cache = True


@compiles(json_text_array, "postgresql")
def _json_text_array_postgresql(element: json_text_array, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"coalesce(json_agg({column} ORDER BY {column}), '[]'::json)::text"


@compiles(json_text_array, "sqlite")
def _json_text_array_sqlite(element: json_text_array, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_group_array({compiler.process(element.clauses, **kw)})"


ModelT = TypeVar("ModelT", bound="Base")


def loaded_columns(model: type[Base]) -> list[Any]:
    """The model's mapped columns, each labelled with its attribute's name: a Core SELECT of these
    gives rows that ``detached`` turns into instances."""
    return [prop.columns[0].label(prop.key) for prop in model.__mapper__.column_attrs]


def detached(model: type[ModelT], values: Mapping[str, Any]) -> ModelT:
    """An instance of ``model`` holding ``values`` as its loaded columns, in no session: for lists
    that only present rows. The ORM's per-row work (identity map, loading state, events) measured
    more than the rest of building a fifty-stream page. Read-only: added to a session, it would be
    inserted."""
    instance: ModelT = model.__mapper__.class_manager.new_instance()
    instance.__dict__.update(values)  # a new instance: nothing to keep in step; the values read as loaded
    return instance


async def release(session: AsyncSession) -> None:
    """Close a request's session. Most reading requests never use theirs (their credential is
    checked on the look-up pool): such a session holds no connection, and is closed without the
    greenlet hop of ``AsyncSession.close`` nor the autobegin-and-commit of an empty commit, which
    measured a quarter of the CPU of ``GET /api/organisation``."""
    if session.in_transaction():
        await session.close()
    else:
        session.sync_session.close()  # no transaction, no connection: nothing to wait for


async def end_transaction(session: AsyncSession) -> None:
    """Commit what the request has done so far and end its transaction, before a call over the
    network (DNS included): a writing transaction holds SQLite's one write lock (``BEGIN IMMEDIATE``)
    and, on PostgreSQL, a pooled connection and its row locks, and must not wait on a remote host.
    The next statement begins a new transaction. So far a request has only authenticated (and
    perhaps noted the session's use): what it then reads to write must be read again, locked."""
    if session.in_transaction():
        await session.commit()
