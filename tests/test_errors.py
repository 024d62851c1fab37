"""Every failure is a 4xx in the shape ``{"error", "detail"}``; no input produces a 500."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import Account
from tests.helpers import assert_error

MAX_BODY = 2048
JSON = {"content-type": "application/json"}


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(getattr(request, "param", {"max_body_bytes": MAX_BODY}))


@pytest.fixture
async def lenient_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Hands back a 500 as a response instead of raising it, so a fuzz loop can report all."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def bot(client: httpx.AsyncClient, admin: Account) -> dict[str, Any]:
    r = await client.post("/api/nectar-bots", json={"name": "Target"}, headers=admin.headers)
    assert r.status_code == 201, r.text
    return dict(r.json()["bot"])


async def count_bots(client: httpx.AsyncClient, admin: Account) -> int:
    r = await client.get("/api/nectar-bots", headers=admin.headers)
    return int(r.json()["pagination"]["total"])


# --- malformed and mistyped bodies ----------------------------------------------------------


async def test_malformed_json_is_422(client: httpx.AsyncClient, admin: Account) -> None:
    for raw in (b'{"name": ', b"{'name': 'x'}", b'{"name": "x",}', b"\xff\xfe{}", b"nul"):
        r = await client.post("/api/nectar-bots", content=raw, headers={**admin.headers, **JSON})
        detail = assert_error(r, 422, "validation_error")["detail"]
        assert "JSON" in detail, (raw, detail)
    assert await count_bots(client, admin) == 0


WRONG_BODIES: list[tuple[Any, str]] = [
    ([{"name": "x"}], "body"),
    ("name", "body"),
    (None, "body"),
    ({"name": "x", "max_conversation_length": "twenty"}, "max_conversation_length"),
    ({"name": "x", "rate_limit_per_hour": 1.5}, "rate_limit_per_hour"),
    ({"name": "x", "confidence_threshold": "high"}, "confidence_threshold"),
    ({"name": "x", "is_public": "perhaps"}, "is_public"),
    ({"name": "x", "honey_jar_ids": "all"}, "honey_jar_ids"),
    ({"name": "x", "honey_jar_ids": ["not-a-uuid"]}, "honey_jar_ids.0"),
    ({"name": ["x"]}, "name"),
    ({"name": "x", "frobnicate": True}, "frobnicate"),
    ({"name": "x", "api_key": "nb_mine"}, "api_key"),
    ({"name": "x", "owner_id": str(uuid.uuid4())}, "owner_id"),
]


async def test_wrong_types_and_unknown_fields_name_the_field(
    client: httpx.AsyncClient, admin: Account
) -> None:
    for body, field in WRONG_BODIES:
        r = await client.post("/api/nectar-bots", json=body, headers=admin.headers)
        detail = assert_error(r, 422, "validation_error")["detail"]
        assert detail.startswith(f"{field}:"), (body, detail)
    assert await count_bots(client, admin) == 0


async def test_unknown_fields_are_refused_on_update_and_on_users_too(
    client: httpx.AsyncClient, admin: Account, bot: dict[str, Any]
) -> None:
    r = await client.put(
        f"/api/nectar-bots/{bot['id']}", json={"api_key_hash": "0" * 64}, headers=admin.headers
    )
    assert assert_error(r, 422, "validation_error")["detail"].startswith("api_key_hash:")
    r = await client.patch(
        f"/api/users/{admin.id}", json={"password_hash": "x"}, headers=admin.headers
    )
    assert assert_error(r, 422, "validation_error")["detail"].startswith("password_hash:")
    r = await client.post(
        "/api/users",
        json={"email": "a@example.com", "password": "x" * 12, "is_superuser": True},
        headers=admin.headers,
    )
    assert assert_error(r, 422, "validation_error")["detail"].startswith("is_superuser:")
    # Nothing was changed.
    r = await client.get(f"/api/nectar-bots/{bot['id']}", headers=admin.headers)
    assert r.json()["api_key_hint"] == bot["api_key_hint"]


async def test_wrong_content_type_is_4xx(client: httpx.AsyncClient, admin: Account) -> None:
    body = json.dumps({"name": "x"})
    for headers in ({"content-type": "text/plain"}, {"content-type": "application/xml"}, {}):
        r = await client.post(
            "/api/nectar-bots", content=body, headers={**admin.headers, **headers}
        )
        assert_error(r, 422, "validation_error")
    r = await client.post("/api/nectar-bots", data={"name": "x"}, headers=admin.headers)
    assert_error(r, 422, "validation_error")
    # The sign-in form does not take JSON.
    r = await client.post(
        "/api/auth/token", json={"username": "admin@example.com", "password": "x" * 12}
    )
    assert_error(r, 422, "validation_error")
    assert await count_bots(client, admin) == 0


# --- ids, routes and methods ------------------------------------------------------------------


async def test_unknown_ids_are_404(client: httpx.AsyncClient, admin: Account) -> None:
    missing = uuid.uuid4()
    for method, url, body in [
        ("GET", f"/api/nectar-bots/{missing}", None),
        ("PUT", f"/api/nectar-bots/{missing}", {"name": "x"}),
        ("DELETE", f"/api/nectar-bots/{missing}", None),
        ("POST", f"/api/nectar-bots/{missing}/regenerate-api-key", None),
    ]:
        r = await client.request(method, url, json=body, headers=admin.headers)
        assert_error(r, 404, "bot_not_found")
    for method, url, body in [
        ("GET", f"/api/users/{missing}", None),
        ("PATCH", f"/api/users/{missing}", {"name": "x"}),
        ("DELETE", f"/api/users/{missing}", None),
    ]:
        r = await client.request(method, url, json=body, headers=admin.headers)
        assert_error(r, 404, "user_not_found")


BAD_IDS = ["123", "not-a-uuid", f"{uuid.uuid4()}x", "%00", "' OR 1=1 --", "0" * 200]


async def test_ids_that_are_not_uuids_are_422(client: httpx.AsyncClient, admin: Account) -> None:
    for bad_id in BAD_IDS:
        for method, url in [
            ("GET", f"/api/nectar-bots/{bad_id}"),
            ("PUT", f"/api/nectar-bots/{bad_id}"),
            ("DELETE", f"/api/nectar-bots/{bad_id}"),
            ("POST", f"/api/nectar-bots/{bad_id}/regenerate-api-key"),
            ("GET", f"/api/users/{bad_id}"),
            ("PATCH", f"/api/users/{bad_id}"),
            ("DELETE", f"/api/users/{bad_id}"),
        ]:
            body = {"name": "x"} if method in ("PUT", "PATCH") else None
            r = await client.request(method, url, json=body, headers=admin.headers)
            detail = assert_error(r, 422, "validation_error")["detail"]
            assert detail.startswith("path."), (method, url, detail)


async def test_unknown_routes_are_404_and_wrong_methods_405(
    client: httpx.AsyncClient, admin: Account, bot: dict[str, Any]
) -> None:
    for url in ("/nope", "/api", "/api/nectar-bot", f"/api/nectar-bots/{bot['id']}/nope"):
        assert_error(await client.get(url, headers=admin.headers), 404, "not_found")
    for method, url, allowed in [
        ("DELETE", "/api/nectar-bots", {"GET", "POST"}),
        ("PATCH", f"/api/nectar-bots/{bot['id']}", {"GET", "PUT", "DELETE"}),
        ("GET", "/api/auth/token", {"POST"}),
        ("PUT", "/api/users", {"GET", "POST"}),
        ("POST", "/healthz", {"GET"}),
    ]:
        r = await client.request(method, url, headers=admin.headers)
        assert_error(r, 405, "method_not_allowed")
        # Starlette names the methods of the first route matching the path, not all of them.
        named = set(r.headers["allow"].replace(" ", "").split(","))
        assert named and named <= allowed | {"HEAD"}, r.headers
    # The bot survived the wrong verbs.
    r = await client.get(f"/api/nectar-bots/{bot['id']}", headers=admin.headers)
    assert r.status_code == 200


# --- body size --------------------------------------------------------------------------------


async def test_oversize_bodies_are_413_with_or_without_content_length(
    client: httpx.AsyncClient, admin: Account
) -> None:
    fits = json.dumps({"name": "fits", "description": "d" * 1500}).encode()
    assert len(fits) <= MAX_BODY
    r = await client.post("/api/nectar-bots", content=fits, headers={**admin.headers, **JSON})
    assert r.status_code == 201, r.text

    too_big = json.dumps({"name": "too big", "description": "d" * MAX_BODY}).encode()
    r = await client.post("/api/nectar-bots", content=too_big, headers={**admin.headers, **JSON})
    assert "2048 bytes" in assert_error(r, 413, "payload_too_large")["detail"]

    async def streamed() -> AsyncIterator[bytes]:
        for start in range(0, len(too_big), 500):
            yield too_big[start : start + 500]

    r = await client.post("/api/nectar-bots", content=streamed(), headers={**admin.headers, **JSON})
    assert "content-length" not in r.request.headers  # sent chunked
    assert_error(r, 413, "payload_too_large")

    # Forms are limited as well (the sign-in form has no size limit of its own).
    r = await client.post("/api/auth/token", data={"username": "x" * 3000, "password": "y"})
    assert_error(r, 413, "payload_too_large")
    assert await count_bots(client, admin) == 1


# --- a small fuzz -------------------------------------------------------------------------------

_DEEP_LIST = b"[" * 5000 + b"]" * 5000
_DEEP_OBJECT = b'{"a":' * 2000 + b"1" + b"}" * 2000
_EVERY_BOT_FIELD = [
    "name",
    "slug",
    "description",
    "system_prompt",
    "honey_jar_ids",
    "max_conversation_length",
    "confidence_threshold",
    "rate_limit_per_hour",
    "rate_limit_per_day",
    "is_public",
    "handoff_enabled",
    "handoff_keywords",
    "handoff_confidence_threshold",
    "status",
]

HOSTILE: list[bytes | Any] = [
    b"",
    b"null",
    b"[]",
    b"0",
    b'"a string"',
    b"true",
    b"{}",
    _DEEP_LIST,
    _DEEP_OBJECT,
    b"[" * 900 + b"]" * 900,
    b'{"name": ' + b"9" * 5000 + b"}",  # more digits than Python parses by default
    b'{"name": "x", "max_conversation_length": 1e400}',
    b'{"name": "x", "confidence_threshold": NaN}',
    b'{"name": "x", "confidence_threshold": -Infinity}',
    b'{"name": "\\ud800"}',  # a lone surrogate
    b'{"name": "x", "name": "y", "name": null}',
    {field: None for field in _EVERY_BOT_FIELD},
    {"name": None},
    {"name": ""},
    {"name": "   "},
    {"name": "a\u0000b"},
    {"name": "x", "description": "\u0000"},
    {"name": "x", "handoff_keywords": ["\u0000"]},
    {"name": "x", "slug": "\u0000\u0000\u0000"},
    {"name": "🐝" * 100},
    {"name": "🐝" * 101},
    {"name": "\u202eevil\u200b\ufeff", "description": "Ω≈ç√∫\u02dcµ≤≥÷ 田中さん 👩‍👩‍👧"},
    {"name": "x", "slug": ""},
    {"name": "x", "slug": "Ünïcödé"},
    {"name": "x", "handoff_keywords": [""]},
    {"name": "x", "handoff_keywords": ["k"] * 1000},
    {"name": "x", "handoff_keywords": [1, None, {}]},
    {"name": "x", "honey_jar_ids": [None]},
    {"name": "x", "honey_jar_ids": [str(uuid.uuid4()) for _ in range(60)]},
    {"name": "x", "max_conversation_length": 10**30},
    {"name": "x", "max_conversation_length": -(10**30)},
    {"name": "x", "rate_limit_per_hour": 2**63, "rate_limit_per_day": 2**64},
    {"name": "x", "rate_limit_per_hour": 10, "rate_limit_per_day": 5},
    {"name": "x", "rate_limit_per_day": 1},
    {"name": "x", "confidence_threshold": 1.0000001},
    {"name": "x", "status": "deleted"},
    {"name": "x", "is_public": True, "slug": None},
    {"name": {"$gt": ""}},
    {"name": "x", "description": "d" * 1500},
    {"email": None, "password": None, "name": None, "role": None},
    {"email": "", "password": ""},
    {"email": "a" * 400 + "@example.com", "password": "p" * 12},
    {"email": "x@example.com", "password": "p" * 12, "role": None},
    {"email": "x@example.com", "password": 12345678901},
    {"email": "a\u0000@example.com", "password": "p" * 12},
    {"email": ["x@example.com"], "password": "p" * 12},
]


async def _fuzz(
    client: httpx.AsyncClient, method: str, url: str, headers: dict[str, str]
) -> list[str]:
    problems = []
    for body in HOSTILE:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = await client.request(method, url, content=raw, headers={**headers, **JSON})
        label = f"{method} {url} {raw[:60]!r}: {r.status_code} {r.text[:200]}"
        if r.status_code >= 500:
            problems.append(label)
        elif r.status_code >= 400:
            try:
                assert_error(r, r.status_code)
            except AssertionError:
                problems.append(label)
        elif not isinstance(r.json(), dict):
            problems.append(label)
    return problems


# Room for the deep and the long bodies, so they reach the JSON parser.
@pytest.mark.parametrize("settings_overrides", [{"max_body_bytes": 65536}], indirect=True)
async def test_fuzz_bots_and_users(
    lenient_client: httpx.AsyncClient, admin: Account, bot: dict[str, Any]
) -> None:
    problems = await _fuzz(lenient_client, "POST", "/api/nectar-bots", admin.headers)
    problems += await _fuzz(lenient_client, "PUT", f"/api/nectar-bots/{bot['id']}", admin.headers)
    problems += await _fuzz(lenient_client, "POST", "/api/users", admin.headers)
    assert not problems, "\n".join(problems)
    # The bot that was fuzzed with updates is still a valid bot.
    r = await lenient_client.get(f"/api/nectar-bots/{bot['id']}", headers=admin.headers)
    assert r.status_code == 200


async def test_fuzz_query_strings(lenient_client: httpx.AsyncClient, admin: Account) -> None:
    problems = []
    for url in ("/api/nectar-bots", "/api/users"):
        for query in [
            "page=abc",
            "page=-1",
            "page=99999999999999999999999",
            "per_page=1e3",
            "per_page=",
            "page=1&page=2",
            "search=%00",
            "search=%ff%fe",
            "search=" + "s" * 500,
            "search=%25%5F%5C",
            "status=deleted",
            "role=root",
            "search[]=x",
        ]:
            r = await lenient_client.get(f"{url}?{query}", headers=admin.headers)
            if r.status_code >= 500 or (
                r.status_code >= 400 and set(r.json()) != {"error", "detail"}
            ):
                problems.append(f"{url}?{query[:40]}: {r.status_code} {r.text[:200]}")
    assert not problems, "\n".join(problems)


async def test_hostile_sign_in_forms(lenient_client: httpx.AsyncClient) -> None:
    for form in [
        {"username": "a\u0000@example.com", "password": "p" * 12},
        {"username": "", "password": ""},
        {"username": "x@example.com", "password": "p" * 1000},
        {"username": "x@example.com", "password": "p", "grant_type": "client_credentials"},
    ]:
        r = await lenient_client.post("/api/auth/token", data=form)
        assert 400 <= r.status_code < 500, (form, r.status_code, r.text)
        assert set(r.json()) == {"error", "detail"}, r.text
