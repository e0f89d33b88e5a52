"""Query parameters read through a model (web.query): the stream listings' and the users list's
answers, refusals included (every problem, in the same order), are what FastAPI's own reading of
the same parameters gave (this file passes against d39cc32~1, the routes as they were, as well),
and the OpenAPI document lists each parameter as before."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Env
from tests.support.data import create_stream

LONG = "x" * 513
NOT_AN_INTEGER = "Input should be a valid integer, unable to parse string as an integer"
TOO_MANY = "List should have at most 20 items after validation, not 21"


@pytest.mark.parametrize(
    ("query", "field", "problem"),
    [
        ("quantity=0", "query.quantity", "Input should be greater than or equal to 1"),
        (
            "quantity=many",
            "query.quantity",
            "Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            "quantity=",
            "query.quantity",
            "Input should be a valid integer, unable to parse string as an integer",
        ),
        ("state=sleeping", "query.state", "Input should be "),
        ("asset_limit=101", "query.asset_limit", "Input should be less than or equal to 100"),
        ("asset_limit=-1", "query.asset_limit", "Input should be greater than or equal to 0"),
        (
            "&".join(["tags[]=t"] * 21),
            "query.tags[]",
            "List should have at most 20 items after validation, not 21",
        ),
        ("&".join(["tag=t"] * 21), "query.tag", TOO_MANY),
        (f"cursor={LONG}", "query.cursor", "String should have at most 512 characters"),
        (f"groupId={'g' * 65}", "query.groupId", "String should have at most 64 characters"),
        ("profile=" + "p" * 17, "query.profile", "String should have at most 16 characters"),
    ],
)
async def test_a_bad_query_is_refused_as_before(env: Env, query: str, field: str, problem: str) -> None:
    org = await env.org()
    response = await env.client.get(f"/api/stream?{query}", headers=org.api_headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    (detail,) = error["details"]
    assert detail["field"] == field and detail["problem"].startswith(problem), detail


async def test_a_query_is_read_as_before(env: Env) -> None:
    org = await env.org()
    first = await create_stream(env, org, tags=["stage"], groupId="g1")
    second = await create_stream(env, org, tags=["stage", "extra"])
    await create_stream(env, org)

    async def names(query: str, path: str = "/api/stream") -> list[str]:
        response = await env.client.get(f"{path}?{query}", headers=org.api_headers)
        assert response.status_code == 200, response.text
        body: list[dict[str, Any]] = response.json()
        return [stream["id"] for stream in body]

    assert len(await names("quantity=500")) == 3  # more than the maximum is the maximum
    assert len(await names("quantity=1&quantity=2")) == 2  # the last of repeated values
    assert await names("tags[]=stage&tag=extra") == [second["id"]]  # both spellings, all of them
    assert await names("tags[]=stage&tags[]=%20") == [second["id"], first["id"]]  # blanks dropped
    assert await names("groupId=g1&unknown=1") == [first["id"]]  # unknown parameters ignored
    assert await names("state=created&quantity=2") == (await names("quantity=2"))
    player = await env.client.get("/api/organisation/playerkey", headers=org.api_headers)
    listed = await env.client.get(
        "/api/stream/public?tags[]=stage&groupId=g1",  # groupId is not the player listing's
        headers={"X-BINTU-PLAYERKEY": player.json()["playerKey"]},
    )
    assert [s["id"] for s in listed.json()] == [second["id"], first["id"]]


async def test_the_document_lists_each_parameter(env: Env) -> None:
    spec = (await env.client.get("/api/openapi.json")).json()
    listed = spec["paths"]["/api/stream"]["get"]
    by_name = {p["name"]: p for p in listed["parameters"]}
    filters = {"tags[]", "tag", "state", "quantity", "cursor", "asset_limit"}
    assert set(by_name) == filters | {"groupId", "profile"}
    assert by_name["quantity"] == {
        "name": "quantity",
        "in": "query",
        "required": False,
        "description": "How many streams (default 50, at most 200).",
        "schema": {
            "type": "integer",
            "minimum": 1,
            "default": 50,
            "title": "Quantity",
            "description": "How many streams (default 50, at most 200).",
        },
    }
    assert by_name["state"]["schema"]["anyOf"][0] == {"$ref": "#/components/schemas/StreamState"}
    assert "StreamState" in spec["components"]["schemas"]
    assert by_name["tags[]"]["schema"]["title"] == "Tags[]" and "default" not in by_name["tags[]"]["schema"]
    assert "422" in listed["responses"] and "invalid_cursor" in listed["responses"]["400"]["description"]
    public = {p["name"] for p in spec["paths"]["/api/stream/public"]["get"]["parameters"]}
    assert public == filters


@pytest.mark.parametrize(
    ("query", "field", "problem"),
    [
        ("limit=0", "query.limit", "Input should be greater than or equal to 1"),
        ("limit=201", "query.limit", "Input should be less than or equal to 200"),
        ("limit=1.5", "query.limit", NOT_AN_INTEGER),
        (f"cursor={LONG}", "query.cursor", "String should have at most 512 characters"),
        (f"role={'r' * 65}", "query.role", "String should have at most 64 characters"),
        (f"q={'q' * 321}", "query.q", "String should have at most 320 characters"),
    ],
)
async def test_a_bad_users_query_is_refused_as_before(env: Env, query: str, field: str, problem: str) -> None:
    org = await env.org()
    response = await env.client.get(f"/api/user?{query}", headers=org.api_headers)
    assert response.status_code == 422, response.text
    (detail,) = response.json()["error"]["details"]
    assert detail == {"field": field, "problem": problem}


async def test_a_users_query_is_read_as_before(env: Env) -> None:
    org = await env.org()
    for n in range(3):
        await env.member(org, "nanoUser", email=f"listed{n}@example.com")
    await env.member(org, "nanoReadOnly", email="reader@example.com")

    async def emails(query: str) -> list[str]:
        response = await env.client.get(f"/api/user?{query}", headers=org.api_headers)
        assert response.status_code == 200, response.text
        return [item["email"] for item in response.json()["items"]]

    assert await emails("role=nanoUser&q=LISTED&limit=2&limit=5") == [
        f"listed{n}@example.com" for n in (2, 1, 0)
    ]
    assert await emails("role=nanoReadOnly&other=x") == ["reader@example.com"]
    page = (await env.client.get("/api/user?role=nanoUser&limit=2", headers=org.api_headers)).json()
    assert await emails(f"role=nanoUser&limit=2&cursor={page['nextCursor']}") == ["listed0@example.com"]


async def test_every_problem_of_a_query_is_told_in_the_order_of_its_parameters(env: Env) -> None:
    org = await env.org()
    users = await env.client.get(
        f"/api/user?cursor={LONG}&limit=0&role={'r' * 65}&q={'q' * 321}", headers=org.api_headers
    )
    assert [d["field"] for d in users.json()["error"]["details"]] == [
        "query.role",
        "query.q",
        "query.limit",
        "query.cursor",
    ]
    streams = await env.client.get(
        f"/api/stream?profile={'p' * 17}&asset_limit=-1&quantity=0&state=x&groupId={'g' * 65}",
        headers=org.api_headers,
    )
    assert [d["field"] for d in streams.json()["error"]["details"]] == [
        "query.state",
        "query.quantity",
        "query.asset_limit",
        "query.groupId",
        "query.profile",
    ]
