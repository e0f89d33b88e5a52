"""Tags: created on use, listed with stream counts (the overview's Tags section), renamed and
deleted across every stream of the organisation, never across organisations."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.conftest import Env
from tests.support.data import audit_entries, create_stream, events


async def _tags(env: Env, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await env.client.get("/api/tag", params=params, headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_tags_come_into_existence_on_use_and_are_counted(env: Env) -> None:
    org = await env.org()
    other = await env.org()
    await create_stream(env, org, tags=["news", "region:eu"])
    await create_stream(env, org, tags=["news"])
    await create_stream(env, other, tags=["secret-project"])
    observer = await env.member(org, "nanoReadOnly")
    assert (await _tags(env, observer.headers))["items"] == [
        {"name": "news", "streams": 2},
        {"name": "region:eu", "streams": 1},
    ]


async def test_tag_list_pages_by_name(env: Env) -> None:
    org = await env.org()
    await create_stream(env, org, tags=["c", "a", "d", "b", "Ünïcode ✓"])
    first = await _tags(env, org.api_headers, limit=2)
    second = await _tags(env, org.api_headers, limit=2, cursor=first["nextCursor"])
    third = await _tags(env, org.api_headers, limit=2, cursor=second["nextCursor"])
    names = [t["name"] for page in (first, second, third) for t in page["items"]]
    assert sorted(names) == sorted(["a", "b", "c", "d", "Ünïcode ✓"]) and len(names) == 5
    assert third["nextCursor"] is None


async def test_rename_merges_and_reaches_every_stream(env: Env) -> None:
    org = await env.org()
    both = await create_stream(env, org, tags=["sports", "sport"])
    old_only = await create_stream(env, org, tags=["sports"])
    operator = await env.member(org, "nanoUser")
    response = await env.client.put("/api/tag/sports", json={"name": "sport"}, headers=operator.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "sport", "streams": 2}
    for stream in (both, old_only):
        tags = (await env.client.get(f"/api/stream/{stream['id']}", headers=org.api_headers)).json()["tags"]
        assert tags == ["sport"]
    assert (await _tags(env, org.api_headers))["items"] == [{"name": "sport", "streams": 2}]
    (entry,) = await audit_entries(env, org=org, action="tag.renamed")
    assert (entry.before, entry.after) == ({"name": "sports"}, {"name": "sport", "streams": 2})
    assert len(await events(env, org=org, type="stream.updated")) == 2

    unknown = await env.client.put("/api/tag/nope", json={"name": "x"}, headers=org.api_headers)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "not_found")
    invalid = await env.client.put("/api/tag/sport", json={"name": "x" * 65}, headers=org.api_headers)
    assert invalid.status_code == 422


async def test_delete_takes_the_tag_off_every_stream(env: Env) -> None:
    org = await env.org()
    first = await create_stream(env, org, tags=["temp", "keep"])
    await create_stream(env, org, tags=["temp"])
    response = await env.client.delete("/api/tag/temp", headers=org.api_headers)
    assert response.status_code == 204
    assert (await env.client.get(f"/api/stream/{first['id']}", headers=org.api_headers)).json()["tags"] == [
        "keep"
    ]
    assert (await _tags(env, org.api_headers))["items"] == [{"name": "keep", "streams": 1}]
    assert (await env.client.delete("/api/tag/temp", headers=org.api_headers)).status_code == 404
    (entry,) = await audit_entries(env, org=org, action="tag.deleted")
    assert entry.before == {"name": "temp", "streams": 2}


async def test_tags_with_slashes_and_spaces_in_the_path(env: Env) -> None:
    org = await env.org()
    await create_stream(env, org, tags=["path/like tag", "a%b"])
    renamed = await env.client.put(
        f"/api/tag/{quote('path/like tag')}", json={"name": "key:value"}, headers=org.api_headers
    )
    assert renamed.status_code == 200, renamed.text
    assert (await env.client.delete(f"/api/tag/{quote('a%b')}", headers=org.api_headers)).status_code == 204
    assert (await _tags(env, org.api_headers))["items"] == [{"name": "key:value", "streams": 1}]


async def test_another_organisations_tag_is_not_found_and_untouched(env: Env) -> None:
    mine, theirs = await env.org(), await env.org()
    await create_stream(env, theirs, tags=["shared-name"])
    await create_stream(env, mine, tags=["mine"])
    assert (await env.client.delete("/api/tag/shared-name", headers=mine.api_headers)).status_code == 404
    rename = await env.client.put("/api/tag/shared-name", json={"name": "x"}, headers=mine.api_headers)
    assert rename.status_code == 404
    # Renaming our own tag onto their tag's name does not touch their streams.
    await env.client.put("/api/tag/mine", json={"name": "shared-name"}, headers=mine.api_headers)
    assert (await _tags(env, theirs.api_headers))["items"] == [{"name": "shared-name", "streams": 1}]
    assert (await _tags(env, mine.api_headers))["items"] == [{"name": "shared-name", "streams": 1}]
