"""The audit log's time range at the edges of the calendar: every output answers a clear 4xx or a
clamped range, never a 500 nor a download cut off after its 200.

A bound whose offset pushes it past year 9999 (or before year 1) once converted to UTC is clamped
to the end (or the start) of time; a bound that is no time at all is 400 ``invalid_time``.
"""

from __future__ import annotations

import csv
import io
from urllib.parse import quote

import httpx
import pytest

from streamward.audit.export import CSV_COLUMNS
from tests.conftest import Env, Member

# (query, whether the organisation's entries fall inside the range)
EDGES = [
    ("to=9999-12-31", True),
    ("to=9999-12-31T23:59:59.999999", True),
    ("to=9999-12-31T23:59-23:59", True),
    ("from=9999-12-31T23:59-23:59", False),
    ("from=0001-01-01T00:00%2B23:59", True),
    ("to=0001-01-01T00:00%2B23:59", False),
    ("from=0001-01-01", True),
    ("from=0001-01-01&to=9999-12-31", True),
]
INVALID = ["from=yesterday", "to=0000-01-01", "to=10000-01-01", "from=2024-13-01", "to=2024-01-01T25:00"]


async def _admin(env: Env) -> Member:
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    # One entry of the organisation: a token reset of the admin's own.
    reset = await env.client.put("/api/user/tokenkey", json={}, headers=admin.headers)
    assert reset.status_code == 200, reset.text
    admin.token = await env.issue_token(admin)
    return admin


def _browser(env: Env, admin: Member) -> httpx.AsyncClient:
    client = env.client_from("198.51.100.90")
    client.cookies.set("sw_session", admin.token or "")
    return client


def _csv_rows(text: str) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.startswith(",".join(CSV_COLUMNS))
    return rows


@pytest.mark.parametrize(("query", "inside"), EDGES, ids=[q for q, _ in EDGES])
async def test_calendar_edges_on_all_four_audit_outputs(env: Env, query: str, inside: bool) -> None:
    admin = await _admin(env)

    api = await env.client.get(f"/api/audit?{query}", headers=admin.headers)
    assert api.status_code == 200, api.text
    assert bool(api.json()["items"]) is inside

    api_csv = await env.client.get(f"/api/audit?format=csv&{query}", headers=admin.headers)
    assert api_csv.status_code == 200, api_csv.text
    assert bool(_csv_rows(api_csv.text)) is inside

    async with _browser(env, admin) as browser:
        page = await browser.get(f"/audit?{query}")
        assert page.status_code == 200, page.text[:300]
        assert ("No entries match" in page.text) is not inside
        page_csv = await browser.get(f"/audit/export.csv?{query}")
        assert page_csv.status_code == 200, page_csv.text[:300]
        assert bool(_csv_rows(page_csv.text)) is inside


@pytest.mark.parametrize("query", INVALID)
async def test_a_bound_that_is_no_time_is_invalid_time_everywhere(env: Env, query: str) -> None:
    admin = await _admin(env)
    for path in ("/api/audit", "/api/audit?format=csv"):
        joined = f"{path}{'&' if '?' in path else '?'}{query}"
        response = await env.client.get(joined, headers=admin.headers)
        assert response.status_code == 400, (joined, response.text)
        assert response.json()["error"]["code"] == "invalid_time"
        assert response.json()["error"]["details"]["field"] in ("from", "to")
    async with _browser(env, admin) as browser:
        for path in ("/audit", "/audit/export.csv"):
            response = await browser.get(f"{path}?{query}")
            assert response.status_code == 400, (path, response.text[:300])
            assert response.headers["content-type"].startswith("text/html")
            assert "YYYY-MM-DD" in response.text


async def test_the_page_keeps_whole_days_and_the_api_keeps_instants(env: Env) -> None:
    """The dashboard's "to" date includes its whole day; the API's "to" is an exclusive instant."""
    admin = await _admin(env)
    api = await env.client.get("/api/audit", headers=admin.headers)
    day = api.json()["items"][0]["createdAt"][:10]
    same_day = await env.client.get(f"/api/audit?to={quote(day)}", headers=admin.headers)
    assert same_day.json()["items"] == []
    async with _browser(env, admin) as browser:
        page = await browser.get(f"/audit?from={day}&to={day}")
    assert "No entries match" not in page.text and "user.token_reset" in page.text
