"""Shared look-ups (streamward.lookup_pool): requests that ask while a statement of the same kind is
under way are answered together by one later statement, and never by a statement sent before they
asked, so a change committed before a request reaches it (a revoked token, a renewed key)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from streamward.lookup_pool import MAX_KEYS_PER_ROUND_TRIP, BatchedLookup, LookupPool
from tests.conftest import Env

LOOKUP = BatchedLookup([("key", "text")], "SELECT w.key (a fake pool answers)")


class FakePool:
    """Answers each statement when the test releases it. A row names the statement that read it, so
    a test can tell which statement answered which request."""

    def __init__(self) -> None:
        self.sent: list[list[Any]] = []  # the keys of each statement, in the order sent
        self.release: list[asyncio.Event] = []
        self.fail: set[int] = set()  # statements (by number) that raise

    async def fetch(self, sql: str, *columns: Any) -> list[tuple[Any, ...]]:
        number = len(self.sent)
        keys = [columns[0]] if sql == LOOKUP.single_sql else list(columns[0])
        self.sent.append(keys)
        self.release.append(asyncio.Event())
        await self.release[number].wait()
        if number in self.fail:
            raise ConnectionError(f"statement {number} failed")
        return [(position, key, number) for position, key in enumerate(keys, 1) if key != "missing"]

    async def close(self) -> None:
        pass


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_requests_asking_meanwhile_share_one_later_statement() -> None:
    fake = FakePool()
    pool = LookupPool(fake)  # type: ignore[arg-type]
    first = asyncio.create_task(pool.one(LOOKUP, ("a",)))
    second = asyncio.create_task(pool.one(LOOKUP, ("b",)))
    await _settle()
    assert fake.sent == [["a"], ["b"]]  # two statements may be under way at once
    waiting = [asyncio.create_task(pool.one(LOOKUP, (key,))) for key in ("c", "d", "c", "a")]
    await _settle()
    assert len(fake.sent) == 2  # the rest wait for a statement sent after they asked
    fake.release[0].set()
    await _settle()
    assert fake.sent[2] == ["c", "d", "a"]  # one statement, each key once
    fake.release[1].set()
    fake.release[2].set()
    assert (await first)[1:] == ("a", 0)
    assert (await second)[1:] == ("b", 1)
    # "a" was asked again while statement 0 was under way: statement 2 answers it, not statement 0.
    assert [(await task)[1:] for task in waiting] == [("c", 2), ("d", 2), ("c", 2), ("a", 2)]


async def test_no_request_is_answered_by_a_statement_sent_before_it_asked() -> None:
    """Random arrivals and completions: every answer comes from a statement sent after its request."""
    rng = random.Random(12)
    fake = FakePool()
    pool = LookupPool(fake)  # type: ignore[arg-type]
    asked: list[tuple[int, asyncio.Task[Any]]] = []
    released = 0
    for _ in range(400):
        if rng.random() < 0.6:
            key = (rng.choice("abcdefg"),)
            # Statements sent so far (a statement's task may not have reached the fake yet).
            asked.append((pool.statements_sent(LOOKUP), asyncio.create_task(pool.one(LOOKUP, key))))
        elif released < len(fake.sent):
            fake.release[released].set()
            released += 1
        await _settle()
    while any(not task.done() for _, task in asked):
        for event in fake.release:
            event.set()
        await _settle()
    for sent_before, task in asked:
        answered_by = task.result()[2]
        assert answered_by >= sent_before
    assert len(fake.sent) < len(asked)  # shared, not one per request


async def test_a_key_without_a_row_is_none() -> None:
    fake = FakePool()
    pool = LookupPool(fake)  # type: ignore[arg-type]
    task = asyncio.create_task(pool.one(LOOKUP, ("missing",)))
    await _settle()
    fake.release[0].set()
    assert await task is None


async def test_a_key_postgresql_cannot_hold_has_no_row_and_is_not_sent() -> None:
    fake = FakePool()
    pool = LookupPool(fake)  # type: ignore[arg-type]
    assert await pool.one(LOOKUP, ("nul\x00byte",)) is None
    assert fake.sent == []


async def test_two_rows_for_one_key_fail_the_statement_rather_than_guess() -> None:
    class TwoRows(FakePool):
        async def fetch(self, sql: str, *columns: Any) -> list[tuple[Any, ...]]:
            return [(1, "a", 0), (1, "b", 0)]

    pool = LookupPool(TwoRows())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        await pool.one(LOOKUP, ("a",))


async def test_closing_the_pool_ends_every_waiting_request() -> None:
    fake = FakePool()
    pool = LookupPool(fake)  # type: ignore[arg-type]
    started = [asyncio.create_task(pool.one(LOOKUP, (key,))) for key in ("a", "b")]
    await asyncio.sleep(0)  # their statements' tasks exist, and may not have run yet
    queued = asyncio.create_task(pool.one(LOOKUP, ("c",)))
    await asyncio.sleep(0)
    await pool.close()
    done, pending = await asyncio.wait([*started, queued], timeout=1)
    assert not pending
    assert all(task.cancelled() for task in done)
    assert pool.statements_sent(LOOKUP) == 2  # nothing sent after closing


async def test_a_failed_statement_fails_its_requests_only() -> None:
    fake = FakePool()
    fake.fail.add(0)
    pool = LookupPool(fake)  # type: ignore[arg-type]
    failing = asyncio.create_task(pool.one(LOOKUP, ("a",)))
    other = asyncio.create_task(pool.one(LOOKUP, ("b",)))
    await _settle()
    later = asyncio.create_task(pool.one(LOOKUP, ("a",)))
    fake.release[0].set()
    await _settle()
    with pytest.raises(ConnectionError):
        await failing
    fake.release[1].set()
    fake.release[2].set()
    assert (await other)[1:] == ("b", 1)
    assert (await later)[1:] == ("a", 2)  # sent after the failure, and answered


async def test_a_request_giving_up_does_not_cancel_the_others_asking_for_its_key() -> None:
    fake = FakePool()
    pool = LookupPool(fake)  # type: ignore[arg-type]
    busy = [asyncio.create_task(pool.one(LOOKUP, (key,))) for key in ("x", "y")]
    await _settle()
    leaving = asyncio.create_task(pool.one(LOOKUP, ("a",)))
    staying = asyncio.create_task(pool.one(LOOKUP, ("a",)))
    await _settle()
    leaving.cancel()
    await _settle()
    for event in fake.release[:2]:
        event.set()
    await _settle()
    fake.release[2].set()
    assert (await staying)[1:] == ("a", 2)
    assert leaving.cancelled()
    await asyncio.gather(*busy)


async def test_a_statement_carries_a_bounded_number_of_keys() -> None:
    fake = FakePool()
    pool = LookupPool(fake)  # type: ignore[arg-type]
    busy = [asyncio.create_task(pool.one(LOOKUP, (key,))) for key in ("x", "y")]
    await _settle()
    many = [asyncio.create_task(pool.one(LOOKUP, (f"k{n}",))) for n in range(MAX_KEYS_PER_ROUND_TRIP + 5)]
    await _settle()
    while any(not task.done() for task in many):
        for event in fake.release:
            event.set()
        await _settle()
    assert max(len(keys) for keys in fake.sent) == MAX_KEYS_PER_ROUND_TRIP
    assert {task.result()[1] for task in many} == {f"k{n}" for n in range(MAX_KEYS_PER_ROUND_TRIP + 5)}
    await asyncio.gather(*busy)


# Through HTTP, on the real database.


async def test_concurrent_reads_with_many_credentials_each_get_their_own_principal(
    env: Env, statements: list[str]
) -> None:
    orgs = [await env.org(f"Shared look-up {n}") for n in range(5)]
    credentials: list[tuple[dict[str, str], int]] = []
    for expected, org in enumerate(orgs):
        admin = await env.member(org)
        reader = await env.member(org, "nanoUser")
        credentials += [(org.api_headers, expected), (admin.headers, expected), (reader.headers, expected)]
    credentials.append(({"X-BINTU-TOKEN": "not-a-token"}, -1))
    credentials.append(({"X-BINTU-APIKEY": "not-a-key"}, -1))
    requests = credentials * 6
    random.Random(3).shuffle(requests)
    statements.clear()
    answers = await asyncio.gather(
        *(env.client.get("/api/organisation", headers=headers) for headers, _ in requests)
    )
    for (_, expected), answer in zip(requests, answers, strict=True):
        if expected < 0:
            assert answer.status_code == 401
        else:
            assert answer.status_code == 200, answer.text
            assert answer.json()["name"] == f"Shared look-up {expected}"
    if env.engine_name == "postgres":
        assert len(statements) < len(requests)  # shared round trips
        assert any("unnest" in statement for statement in statements)


async def test_a_lone_look_up_is_the_single_key_statement(env: Env, statements: list[str]) -> None:
    """Its plan is kept by PostgreSQL after five runs; a shared statement's is made each time."""
    if env.engine_name != "postgres":
        pytest.skip("SQLite has no look-up pool")
    org = await env.org()
    admin = await env.member(org)
    statements.clear()
    for headers in (admin.headers, org.api_headers):
        assert (await env.client.get("/api/organisation", headers=headers)).status_code == 200
    assert len(statements) == 2
    assert not any("unnest" in statement for statement in statements)


async def test_a_token_key_renewed_while_reads_are_under_way_refuses_every_read_sent_after_it(
    env: Env,
) -> None:
    org = await env.org()
    admin = await env.member(org)
    other = await env.member(org)
    renewed = asyncio.Event()
    reading = asyncio.Event()  # some reads have been answered: the readers are under way
    outcomes: list[tuple[bool, int]] = []

    async def reader() -> None:
        reads_after = 0
        while reads_after < 5:  # until this reader has sent five reads after the renewal
            after = renewed.is_set()
            answer = await env.client.get("/api/organisation", headers=admin.headers)
            outcomes.append((after, answer.status_code))
            reads_after += after
            if len(outcomes) >= 8:
                reading.set()

    async def renew() -> None:
        await reading.wait()
        body = {"userId": str(admin.id)}
        answer = await env.client.put("/api/user/tokenkey", json=body, headers=other.headers)
        assert answer.status_code == 200, answer.text
        renewed.set()

    await asyncio.gather(*(reader() for _ in range(8)), renew())
    assert {status for after, status in outcomes if after} == {401}
    assert any(status == 200 for after, status in outcomes if not after)
