"""The lists build their JSON straight from rows (#12): what they answer must stay exactly what
their response models describe and would serialise, and a page must cost the same number of
statements whatever its rows hold."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from streamward.users.schemas import UserPage
from tests.conftest import Env
from tests.support.mfa import Clock, enrol_app


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


async def test_the_users_list_answers_what_its_model_would(env: Env, clock: Clock) -> None:
    org = await env.org()
    with_app = await env.member(org, "nanoReadOnly")
    await enrol_app(env, with_app, clock)
    for _ in range(2):
        await env.member(org, "nanoUser")
    response = await env.client.get("/api/user?limit=2", headers=org.api_headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    # Validated by the model, then serialised by it: the same document, key for key.
    assert UserPage.model_validate(answer).model_dump(mode="json", by_alias=True) == answer
    assert answer["nextCursor"] is not None
    rest = await env.client.get(f"/api/user?cursor={answer['nextCursor']}", headers=org.api_headers)
    assert rest.status_code == 200, rest.text
    items = answer["items"] + rest.json()["items"]
    flags = {item["email"]: item["mfa"] for item in items}
    assert len(flags) == len(items)  # no member twice
    assert flags[with_app.email] == {"totp": True, "passkey": False}
    assert [mfa for email, mfa in flags.items() if email != with_app.email] == [
        {"totp": False, "passkey": False}
    ] * (len(items) - 1)


async def test_a_users_page_is_one_statement(env: Env) -> None:
    """The page and its rows' second-factor flags come in one statement (the credential is checked
    on the look-up pool on PostgreSQL, in the session on SQLite: counted as it comes)."""
    org = await env.org()
    for _ in range(3):
        await env.member(org, "nanoUser")
    statements: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    engine = env.runtime.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        response = await env.client.get("/api/user", headers=org.api_headers)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert response.status_code == 200, response.text
    listing = [s for s in statements if "membership" in s.lower() and "ORDER BY" in s]
    assert len(listing) == 1
    assert not any("totp_factor" in s.lower() for s in statements if s not in listing)
