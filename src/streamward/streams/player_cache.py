"""The player-read cache: public answers to players, kept at most one second, per process.

A live event's audience reads the same stream info thousands of times a second (every player reads
its stream or group on start; SDK pages list streams with the player key). What they read is
public, so each process keeps the finished answer (the JSON bytes and its ETag) for at most
``TTL_SECONDS`` and serves it again without touching the database. Only public answers enter it:
never one that depended on credentials, nor one of an organisation that requires a playback token
(that token is checked on every request; of such answers the cache keeps no more than a note that
they are the reader's own).

How stale an answer may be, and why it is never more:

* An answer is kept ``TTL_SECONDS`` from the moment its reading *started* (``Fill.started``), so
  the data in it is at most that old. This bounds every other process: a stream locked or deleted
  through one process stops being served everywhere within that second.
* In the process that made a change, the organisation's answers are dropped as soon as the change
  commits (a post-commit hook of the process's database, see ``player_cache``). A change is noticed
  from the rows a flush wrote (streams, their tags, recorded assets, the organisation's own row:
  lock, unlock, stop, delete, tags, push URL, player access, player key, VOD visibility, packages)
  and from ``note_player_change``, which writers that change rows with a bulk statement call.
* A reading that began before such a change cannot store what it read: every change advances a
  sequence number, and an answer whose reading began before its organisation's last change is
  refused (``put`` returns the answer unstored).

When an answer expires under load, the first request to miss reads it again and the others that
miss meanwhile wait for that one reading (``lead_or_wait``) instead of all going to the database
at once. When that reading cannot be kept (it took longer than the TTL, as under an overloaded
database, or a change overtook it) its answer is older than the waiters may be given, since they
arrived after it began; they then share the next reading, which begins after all of them arrived
and so may answer them whether or not it can be kept. Were each of them to read for itself, an
overload would feed itself: the readings slow down, none can be kept, every player start becomes a
query. Where the answer turns out to depend on the reader (a playback token is required), the
cache keeps only a note saying so, for as long as it would have kept the answer, so that those
readers go to the database at once instead of queueing behind one another.

Bounded: at most ``max_entries`` answers and ``max_bytes`` of answer bodies, the least recently
used dropped first.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from streamward.db import Database

TTL_SECONDS = 1.0
MAX_ENTRIES = 4096
MAX_BYTES = 64 * 1024 * 1024
# How many organisations' last-change numbers are remembered for readings still in flight; beyond
# that the oldest are forgotten and every reading older than them refused (safe, only slower).
MAX_REMEMBERED_CHANGES = 4096

# Where the cache reads the time, looked up at each use: tests replace it to step past the TTL.
clock: Callable[[], float] = time.monotonic

# session.info: the organisations whose player-visible rows this session's transaction changed.
_CHANGED = "streamward.player_cache_changed"
# Tables whose rows make up what players read (each row names its organisation_id), besides the
# organisation's own row. Named, not imported: ``vod`` (recorded assets) sits above ``streams``.
_PLAYER_VISIBLE_TABLES = frozenset({"stream", "stream_tag", "vod_asset"})
_ORGANISATION_TABLE = "organisation"


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A finished public answer: its body, its strong ETag and the extra headers it carries. Or,
    not ``public``, a note that the answer depends on the reader (its organisation requires a
    playback token): it holds nothing, and tells whoever reads the same thing to read for itself
    at once rather than wait for another request's reading."""

    organisation_id: uuid.UUID
    body: bytes
    etag: str
    headers: tuple[tuple[str, str], ...]
    expires: float
    sequence: int
    public: bool = True


@dataclass(slots=True)
class Fill:
    """One reading of an answer that was not cached: when it started, under which change number,
    and whether other requests wait for it."""

    key: Hashable
    sequence: int
    started: float
    waiters: asyncio.Future[CachedAnswer | None] | None = None
    stored: bool = False  # its answer was kept: fresh enough for anyone who waited for it


def strong_etag(body: bytes, headers: Iterable[tuple[str, str]] = ()) -> str:
    """The same bytes give the same tag in every process, so revalidation works whichever process
    (or CDN node) a player reaches."""
    digest = hashlib.blake2b(body, digest_size=16)
    for name, value in headers:
        digest.update(f"\n{name}:{value}".encode())
    return f'"{digest.hexdigest()}"'


@dataclass
class PlayerCache:
    ttl: float = TTL_SECONDS
    max_entries: int = MAX_ENTRIES
    max_bytes: int = MAX_BYTES
    _answers: OrderedDict[Hashable, CachedAnswer] = field(default_factory=OrderedDict)
    _by_organisation: dict[uuid.UUID, set[Hashable]] = field(default_factory=dict)
    _bytes: int = 0
    _sequence: int = 0
    _changed_at: OrderedDict[uuid.UUID, int] = field(default_factory=OrderedDict)
    _forgotten_before: int = 0
    _filling: dict[Hashable, Fill] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._answers)

    @property
    def size_in_bytes(self) -> int:
        return self._bytes

    def answers(self) -> list[CachedAnswer]:
        """What the cache holds, least recently used first (for inspection)."""
        return list(self._answers.values())

    def get(self, key: Hashable) -> CachedAnswer | None:
        answer = self._answers.get(key)
        if answer is None:
            return None
        if clock() >= answer.expires:
            self._drop(key)
            return None
        self._answers.move_to_end(key)
        return answer

    def begin(self, key: Hashable) -> Fill:
        """A reading of ``key`` starts now (before anything is read from the database)."""
        return Fill(key, self._sequence, clock())

    async def lead_or_wait(self, key: Hashable) -> tuple[CachedAnswer | None, Fill | None]:
        """After a miss: ``(answer, None)`` when another request's reading of ``key`` produced it
        meanwhile; else ``(None, fill)``, and the caller reads (then calls ``finish``)."""
        # The first reading waited for was under way when this request arrived; any later one
        # begins after that one ended (a key has one leader at a time), so after this request.
        began_before_us = True
        while (leader := self._filling.get(key)) is not None and leader.waiters is not None:
            # shield: a waiter that is cancelled (its client left) must not cancel the others' wait.
            answer = await asyncio.shield(leader.waiters)
            if answer is None:
                return None, self.begin(key)  # the reading failed (a refusal): read for ourselves
            if leader.stored or not began_before_us or not answer.public:
                return answer, None  # a note that answers are private: read for ourselves at once
            # Not kept, and read before this request arrived: too old for it. Share the next
            # reading (lead it, or wait for whoever does), which begins after this request.
            began_before_us = False
        fill = self.begin(key)
        fill.waiters = asyncio.get_running_loop().create_future()
        self._filling[key] = fill
        return None, fill

    def finish(self, fill: Fill, answer: CachedAnswer | None = None) -> None:
        """The reading is over; whoever waits gets ``answer`` (None: read for yourself), and takes it
        when it was kept, began after they arrived, or is a private note (``lead_or_wait``)."""
        if fill.waiters is None:
            return
        if self._filling.get(fill.key) is fill:
            del self._filling[fill.key]
        if not fill.waiters.done():
            fill.waiters.set_result(answer)

    def put(
        self,
        fill: Fill | None,
        organisation_id: uuid.UUID,
        body: bytes,
        headers: tuple[tuple[str, str], ...] = (),
        *,
        public: bool = True,
    ) -> tuple[CachedAnswer, bool]:
        """The answer of ``fill`` and whether it was stored: not when its organisation changed
        since the reading began, nor when the reading took longer than the TTL (nor without a
        fill: a reading nobody began through the cache). Not ``public``: only the note that
        readers of this read for themselves (``body`` is not kept)."""
        if not public:
            body, headers = b"", ()
        etag = strong_etag(body, headers)
        if fill is None:
            return CachedAnswer(organisation_id, body, etag, headers, clock(), self._sequence, public), False
        expires = fill.started + self.ttl
        answer = CachedAnswer(organisation_id, body, etag, headers, expires, fill.sequence, public)
        stale = (
            fill.sequence < self._forgotten_before
            or self._changed_at.get(organisation_id, -1) > fill.sequence
            or clock() >= answer.expires
        )
        if stale or len(body) > self.max_bytes:
            self.finish(fill, answer)  # for the waiters that arrived before it began, if any
            return answer, False
        fill.stored = True
        self._drop(fill.key)
        self._answers[fill.key] = answer
        self._by_organisation.setdefault(organisation_id, set()).add(fill.key)
        self._bytes += len(body)
        while len(self._answers) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._answers)))
        self.finish(fill, answer)
        return answer, True

    def invalidate(self, organisation_ids: Iterable[uuid.UUID]) -> None:
        """Forget these organisations' answers, and refuse readings of them already under way."""
        for organisation_id in organisation_ids:
            self._sequence += 1
            self._changed_at[organisation_id] = self._sequence
            self._changed_at.move_to_end(organisation_id)
            for key in self._by_organisation.pop(organisation_id, ()):
                self._drop(key)
        while len(self._changed_at) > MAX_REMEMBERED_CHANGES:
            _, sequence = self._changed_at.popitem(last=False)
            self._forgotten_before = max(self._forgotten_before, sequence)

    def _drop(self, key: Hashable) -> None:
        answer = self._answers.pop(key, None)
        if answer is None:
            return
        self._bytes -= len(answer.body)
        keys = self._by_organisation.get(answer.organisation_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_organisation[answer.organisation_id]


# One cache per database of the process: two apps in one process (tests) keep their own, as two
# processes would.
_caches: weakref.WeakKeyDictionary[Database, PlayerCache] = weakref.WeakKeyDictionary()


def player_cache(database: Database) -> PlayerCache:
    """The process's cache of answers read from ``database``; created on first use, with the hook
    that drops an organisation's answers once a change to it commits here."""
    cache = _caches.get(database)
    if cache is None:
        cache = _caches[database] = PlayerCache()

        def forget_changed(info: dict[Any, Any]) -> None:
            changed = info.pop(_CHANGED, None)
            if changed:
                cache.invalidate(changed)

        database.after_commit(forget_changed)
    return cache


def note_player_change(session: AsyncSession | Session, organisation_id: uuid.UUID) -> None:
    """This transaction changes what the organisation's players read in a way a flush does not
    show (a bulk UPDATE or DELETE): drop its cached answers when it commits."""
    session.info.setdefault(_CHANGED, set()).add(organisation_id)


def _note_flushed_changes(session: Session, _flush_context: Any) -> None:
    for instance in (*session.new, *session.dirty, *session.deleted):
        table = getattr(instance, "__tablename__", None)
        if table == _ORGANISATION_TABLE:
            note_player_change(session, instance.id)
        elif table in _PLAYER_VISIBLE_TABLES:
            note_player_change(session, instance.organisation_id)


# Every flush of the process notes the organisations whose player-visible rows it wrote, from the
# start: a change flushed before the first cache existed must still drop what that cache reads
# before the change commits.
event.listen(Session, "after_flush", _note_flushed_changes)
