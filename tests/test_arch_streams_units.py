"""The units issue 11 split out of the streams and webhooks features keep one rule each in one place:
what a send result means (webhooks/outcome.py), what a stream's state allows besides its transitions
(streams/lifecycle.py), and a delivery library that knows nothing of the worker that loops over it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import streamward
from streamward.egress.client import SendResult
from streamward.streams.lifecycle import EDITS, StreamEdit, StreamEditConflict, check_edit, may_edit
from streamward.streams.models import Stream, StreamState
from streamward.webhooks.delivery import BACKOFF_SECONDS, MAX_ATTEMPTS, MAX_RETRY_AFTER_SECONDS, next_delay
from streamward.webhooks.outcome import outcome_of
from tests.conftest import Env
from tests.support.pages import assert_page, signed_in, submit

TIMED_OUT = SendResult(None, 1000, error="timed out after 1 s")
REFUSED = SendResult(None, 0, error="the webhook has no signing secret", refused=True)


@pytest.mark.parametrize(
    ("result", "status", "error", "retryable", "answer"),
    [
        (SendResult(204, 12), "succeeded", None, False, "the receiver answered HTTP 204"),
        (SendResult(404, 12), "failed", "HTTP 404", False, "the receiver answered HTTP 404"),
        (SendResult(429, 12), "failed", "HTTP 429", True, "the receiver answered HTTP 429"),
        (SendResult(503, 12), "failed", "HTTP 503", True, "the receiver answered HTTP 503"),
        (TIMED_OUT, "failed", "timed out after 1 s", True, "no answer (timed out after 1 s)"),
        (
            REFUSED,
            "refused",
            "the webhook has no signing secret",
            False,
            "no answer (the webhook has no signing secret)",
        ),
    ],
)
def test_a_send_result_means_one_thing_everywhere(
    result: SendResult, status: str, error: str | None, retryable: bool, answer: str
) -> None:
    outcome = outcome_of(result)
    assert (outcome.status, outcome.error, outcome.retryable, outcome.answer) == (
        status,
        error,
        retryable,
        answer,
    )
    assert outcome.delivered is result.ok
    assert (outcome.response_code, outcome.duration_ms) == (result.status_code, result.duration_ms)


def test_retries_follow_the_backoff_and_honour_retry_after_within_a_day() -> None:
    busy = outcome_of(SendResult(503, 5))
    assert [next_delay(attempt, busy) for attempt in range(1, MAX_ATTEMPTS)] == list(BACKOFF_SECONDS[1:])
    assert next_delay(MAX_ATTEMPTS, busy) is None  # the last attempt
    assert next_delay(1, outcome_of(SendResult(404, 5))) is None  # no point asking again
    assert next_delay(1, outcome_of(REFUSED)) is None  # nothing was sent
    slow_down = outcome_of(SendResult(429, 5, retry_after_seconds=120))
    assert next_delay(1, slow_down) == 120
    forever = outcome_of(SendResult(429, 5, retry_after_seconds=10 * MAX_RETRY_AFTER_SECONDS))
    assert next_delay(1, forever) == MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize("edit", list(StreamEdit))
def test_only_a_deleted_stream_refuses_tags_and_restreaming(edit: StreamEdit) -> None:
    assert EDITS[edit] == {state for state in StreamState if state is not StreamState.DELETED}
    for state in StreamState:
        assert may_edit(Stream(state=state.value), edit) is (state is not StreamState.DELETED)
    with pytest.raises(StreamEditConflict) as refused:
        check_edit(Stream(state=StreamState.DELETED.value), edit)
    assert (refused.value.status_code, refused.value.code) == (409, "stream_state_conflict")
    assert refused.value.details == {"state": "deleted", "action": edit.value}
    word = {StreamEdit.TAG: "tagged", StreamEdit.PUSH_URL: "restreamed"}[edit]
    assert refused.value.message == f"A deleted stream cannot be {word}."


async def test_a_deleted_stream_keeps_no_push_url_change(env: Env) -> None:
    org = await env.org()
    created = await env.client.post("/api/stream", json={}, headers=org.api_headers)
    stream_id = created.json()["id"]
    await env.client.delete(f"/api/stream/{stream_id}", headers=org.api_headers)
    # Removing the target needs no DNS: the state rule alone refuses it.
    refused = await env.client.put(
        f"/api/stream/{stream_id}/push_url", json={"url": None}, headers=org.api_headers
    )
    error = refused.json()["error"]
    assert (refused.status_code, error["code"], error["details"]) == (
        409,
        "stream_state_conflict",
        {"state": "deleted", "action": "push_url"},
    )
    assert error["message"] == "A deleted stream cannot be restreamed."


async def test_the_stream_page_relies_on_the_services_refusal_to_tag(env: Env) -> None:
    org = await env.org()
    admin = await signed_in(env, await env.member(org, "nanoAdmin"))
    created = await env.client.post("/api/stream", json={}, headers=org.api_headers)
    stream_id = created.json()["id"]
    await env.client.delete(f"/api/stream/{stream_id}", headers=org.api_headers)
    # A form posted anyway (a page opened before the stream was deleted) meets the service's rule.
    page = assert_page(await submit(admin, "/streams", f"/streams/{stream_id}/tags", {"tags": "late"}), 409)
    assert "A deleted stream cannot be tagged." in page
    tagged = await env.client.get(f"/api/stream/{stream_id}", headers=org.api_headers)
    assert tagged.json()["tags"] == []


def _imports(module: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_delivery_library_does_not_know_the_worker() -> None:
    package = Path(streamward.__file__).parent / "webhooks"
    for module in package.glob("*.py"):
        loop_side = {
            name
            for name in _imports(module)
            if name.split(".")[:2]
            in (["streamward", "worker"], ["streamward", "housekeeping"], ["streamward", "runtime"])
        }
        assert not loop_side, f"{module.name} imports {sorted(loop_side)}"
