"""Bot management through the HTTP API: create, validate, list, get, update, delete."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
import yaml

from nectar.settings import REPO_ROOT
from tests.helpers import create_bot

URL = "/api/nectar-bots"
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
PAGINATION_KEYS = {"page", "pages", "per_page", "total", "has_next", "has_prev"}

SEED_DEFAULTS = {
    "max_conversation_length": 20,
    "confidence_threshold": 0.7,
    "rate_limit_per_hour": 100,
    "rate_limit_per_day": 1000,
    "handoff_confidence_threshold": 0.6,
    "handoff_enabled": True,
    "is_public": False,
    "status": "active",
}


def config_keywords() -> list[str]:
    raw = yaml.safe_load((REPO_ROOT / "config" / "config.yml").read_text(encoding="utf-8"))
    keywords: list[str] = raw["nectar_bots"]["handoff"]["triggers"]["keywords"]
    return keywords


async def get_bot(client: httpx.AsyncClient, account: Any, bot_id: str) -> dict[str, Any]:
    r = await client.get(f"{URL}/{bot_id}", headers=account.headers)
    assert r.status_code == 200, r.text
    bot: dict[str, Any] = r.json()
    return bot


async def list_bots(client: httpx.AsyncClient, account: Any, **params: Any) -> dict[str, Any]:
    r = await client.get(URL, params=params, headers=account.headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == {"bots", "pagination"}
    assert set(body["pagination"]) == PAGINATION_KEYS
    return body


def error_problem(r: httpx.Response, status: int | tuple[int, ...], field: str) -> str | None:
    """Why ``r`` is not an error of ``status`` in the {"error", "detail"} shape naming ``field``."""
    statuses = (status,) if isinstance(status, int) else status
    if r.status_code not in statuses:
        return f"status {r.status_code}, expected {statuses}: {r.text}"
    body = r.json()
    if set(body) != {"error", "detail"} or not all(isinstance(v, str) for v in body.values()):
        return f"not the error shape: {body}"
    if field not in body["detail"]:
        return f"detail does not name {field!r}: {body['detail']!r}"
    return None


def public_view(bot: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in bot.items() if k != "api_key"}


# --- create -----------------------------------------------------------------------------------


async def test_create_with_only_a_name_takes_the_seed_defaults(
    client: httpx.AsyncClient, admin: Any
) -> None:
    r = await client.post(URL, json={"name": "Support"}, headers=admin.headers)

    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"message", "bot"}
    assert isinstance(body["message"], str)
    assert body["message"]
    bot = body["bot"]
    for field, value in SEED_DEFAULTS.items():
        assert bot[field] == value, field
    assert bot["handoff_keywords"] == config_keywords()
    assert bot["name"] == "Support"
    assert bot["description"] == ""
    assert bot["system_prompt"] == ""
    assert bot["honey_jar_ids"] == []
    assert bot["slug"] is None
    assert bot["owner_id"] == str(admin.id)
    uuid.UUID(bot["id"])
    assert await get_bot(client, admin, bot["id"]) == public_view(bot)


async def test_create_stores_and_returns_every_seed_field(
    client: httpx.AsyncClient, admin: Any
) -> None:
    jars = []
    for name in ("Invoices", "Refund policy"):
        r = await client.post("/api/honey-jars", json={"name": name}, headers=admin.headers)
        assert r.status_code == 201, r.text
        jars.append(r.json()["honey_jar"]["id"])
    fields = {
        "name": "Billing Bee",
        "description": "Answers invoice questions",
        "system_prompt": "You are a polite billing assistant.",
        "honey_jar_ids": jars,
        "max_conversation_length": 42,
        "confidence_threshold": 0.85,
        "rate_limit_per_hour": 250,
        "rate_limit_per_day": 4000,
        "is_public": True,
        "handoff_enabled": False,
        "handoff_keywords": ["refund now", "chargeback"],
        "handoff_confidence_threshold": 0.35,
        "status": "maintenance",
        "slug": "billing-bee",
    }

    bot = await create_bot(client, admin, **fields)

    for field, value in fields.items():
        assert bot[field] == value, field
    stored = await get_bot(client, admin, bot["id"])
    for field, value in fields.items():
        assert stored[field] == value, field


async def test_name_is_trimmed_and_boundary_values_are_accepted(
    client: httpx.AsyncClient, admin: Any
) -> None:
    low = await create_bot(
        client,
        admin,
        name="  Edge  ",
        confidence_threshold=0,
        handoff_confidence_threshold=0,
        max_conversation_length=2,
        rate_limit_per_hour=1,
        rate_limit_per_day=1,
    )
    high = await create_bot(
        client,
        admin,
        name="n" * 100,
        confidence_threshold=1,
        handoff_confidence_threshold=1,
        max_conversation_length=1000,
        rate_limit_per_hour=500,
        rate_limit_per_day=500,
    )

    assert low["name"] == "Edge"
    assert (low["confidence_threshold"], low["max_conversation_length"]) == (0, 2)
    assert (low["rate_limit_per_hour"], low["rate_limit_per_day"]) == (1, 1)
    assert high["name"] == "n" * 100
    assert (high["confidence_threshold"], high["max_conversation_length"]) == (1, 1000)


INVALID_CREATES: list[tuple[Any, str]] = [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "n" * 101}, "name"),
    ({"name": None}, "name"),
    ({"name": 123}, "name"),
    ({"confidence_threshold": -0.01}, "confidence_threshold"),
    ({"confidence_threshold": 1.01}, "confidence_threshold"),
    ({"confidence_threshold": "high"}, "confidence_threshold"),
    ({"handoff_confidence_threshold": -1}, "handoff_confidence_threshold"),
    ({"handoff_confidence_threshold": 1.5}, "handoff_confidence_threshold"),
    ({"max_conversation_length": 1}, "max_conversation_length"),
    ({"max_conversation_length": 1001}, "max_conversation_length"),
    ({"max_conversation_length": 2.5}, "max_conversation_length"),
    ({"rate_limit_per_hour": 0}, "rate_limit_per_hour"),
    ({"rate_limit_per_hour": -5}, "rate_limit_per_hour"),
    ({"rate_limit_per_day": 0}, "rate_limit_per_day"),
    ({"rate_limit_per_hour": 100, "rate_limit_per_day": 99}, "rate_limit_per_day"),
    ({"status": "deleted"}, "status"),
    ({"status": "ACTIVE"}, "status"),
    ({"slug": "Bad Slug"}, "slug"),
    ({"slug": "ab"}, "slug"),
    ({"slug": "-leading"}, "slug"),
    ({"slug": "trailing-"}, "slug"),
    ({"slug": "double--dash"}, "slug"),
    ({"slug": "s" * 65}, "slug"),
    ({"handoff_keywords": [f"kw {i}" for i in range(101)]}, "handoff_keywords"),
    ({"handoff_keywords": [""]}, "handoff_keywords"),
    ({"handoff_keywords": "talk to a human"}, "handoff_keywords"),
    ({"honey_jar_ids": ["not-a-uuid"]}, "honey_jar_ids"),
    ({"colour": "yellow"}, "colour"),
    ({"is_public": None}, "is_public"),
    ({"handoff_enabled": None}, "handoff_enabled"),
    ({"max_conversation_length": None}, "max_conversation_length"),
    ({"handoff_keywords": None}, "handoff_keywords"),
    ({"status": None}, "status"),
    ({"rate_limit_per_day": None}, "rate_limit_per_day"),
]


async def test_invalid_create_is_422_naming_the_field_and_creates_nothing(
    client: httpx.AsyncClient, admin: Any
) -> None:
    problems = []
    for fields, field in INVALID_CREATES:
        payload = {"name": "Support", **fields} if "name" not in fields and fields else fields
        r = await client.post(URL, json=payload, headers=admin.headers)
        problem = error_problem(r, 422, field)
        if problem:
            problems.append(f"{payload!r:.80}: {problem}")

    assert problems == []
    assert (await list_bots(client, admin))["pagination"]["total"] == 0


async def test_malformed_bodies_are_4xx_not_500(client: httpx.AsyncClient, admin: Any) -> None:
    headers = {**admin.headers, "Content-Type": "application/json"}
    statuses = {}
    for content in (
        b'{"name": "x", "confidence_threshold": NaN}',
        b'{"name": "x", "rate_limit_per_day": Infinity}',
        b'{"name": "x",',
        b"[]",
        b'"Support"',
    ):
        r = await client.post(URL, content=content, headers=headers)
        assert set(r.json()) == {"error", "detail"}, r.text
        statuses[content] = r.status_code

    assert set(statuses.values()) == {422}, statuses
    assert (await list_bots(client, admin))["pagination"]["total"] == 0


async def test_daily_limit_below_the_default_hourly_limit_is_refused(
    client: httpx.AsyncClient, admin: Any
) -> None:
    # Only the daily limit is sent; it is below the default hourly limit of 100.
    r = await client.post(URL, json={"name": "x", "rate_limit_per_day": 50}, headers=admin.headers)

    assert error_problem(r, (400, 422), "rate_limit_per_day") is None
    assert (await list_bots(client, admin))["pagination"]["total"] == 0


async def test_keywords_are_deduplicated_case_insensitively(
    client: httpx.AsyncClient, admin: Any
) -> None:
    bot = await create_bot(
        client,
        admin,
        handoff_keywords=["Human Agent", "human agent", " HUMAN AGENT ", "billing", "Billing"],
    )
    assert bot["handoff_keywords"] == ["Human Agent", "billing"]

    r = await client.put(
        f"{URL}/{bot['id']}",
        json={"handoff_keywords": ["Refund", "REFUND", "chargeback"]},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["bot"]["handoff_keywords"] == ["Refund", "chargeback"]
    assert (await get_bot(client, admin, bot["id"]))["handoff_keywords"] == ["Refund", "chargeback"]


async def test_keyword_list_limits(client: httpx.AsyncClient, admin: Any) -> None:
    hundred = [f"phrase {i}" for i in range(100)]
    full = await create_bot(client, admin, handoff_keywords=hundred)
    empty = await create_bot(client, admin, handoff_keywords=[])

    assert full["handoff_keywords"] == hundred
    # An explicit empty list switches keyword triggers off; it is not replaced by the defaults.
    assert empty["handoff_keywords"] == []
    assert (await get_bot(client, admin, empty["id"]))["handoff_keywords"] == []


# --- slugs ------------------------------------------------------------------------------------


async def test_public_bots_get_distinct_slugs_from_their_names(
    client: httpx.AsyncClient, admin: Any
) -> None:
    first = await create_bot(client, admin, name="Customer Support!", is_public=True)
    second = await create_bot(client, admin, name="Customer Support!", is_public=True)
    accented = await create_bot(client, admin, name="Café Über Hilfe", is_public=True)
    private = await create_bot(client, admin, name="Customer Support!")

    assert first["slug"] == "customer-support"
    assert SLUG.match(second["slug"])
    assert second["slug"] != first["slug"]
    assert second["slug"].startswith("customer-support")
    assert accented["slug"] == "cafe-uber-hilfe"
    assert private["slug"] is None


async def test_concurrent_public_bots_with_one_name_all_get_a_slug(
    client: httpx.AsyncClient, admin: Any
) -> None:
    async def create() -> httpx.Response:
        return await client.post(
            URL, json={"name": "Helpdesk", "is_public": True}, headers=admin.headers
        )

    responses = await asyncio.gather(*(create() for _ in range(4)))

    assert [r.status_code for r in responses] == [201] * 4, [r.text for r in responses]
    slugs = {r.json()["bot"]["slug"] for r in responses}
    assert len(slugs) == 4

    private = [await create_bot(client, admin, name="Helpdesk") for _ in range(3)]
    responses = await asyncio.gather(
        *(
            client.put(f"{URL}/{bot['id']}", json={"is_public": True}, headers=admin.headers)
            for bot in private
        )
    )
    assert [r.status_code for r in responses] == [200] * 3, [r.text for r in responses]
    slugs |= {r.json()["bot"]["slug"] for r in responses}
    assert len(slugs) == 7
    assert all(SLUG.match(slug) for slug in slugs)


async def test_slug_already_in_use_is_409(client: httpx.AsyncClient, admin: Any) -> None:
    taken = await create_bot(client, admin, name="One", is_public=True, slug="help-desk")
    other = await create_bot(client, admin, name="Two", is_public=True)

    r = await client.post(
        URL, json={"name": "Three", "is_public": True, "slug": "help-desk"}, headers=admin.headers
    )
    assert r.status_code == 409, r.text
    assert set(r.json()) == {"error", "detail"}
    assert "help-desk" in r.json()["detail"]

    r = await client.put(f"{URL}/{other['id']}", json={"slug": "help-desk"}, headers=admin.headers)
    assert r.status_code == 409, r.text
    assert (await get_bot(client, admin, other["id"]))["slug"] == "two"
    assert (await list_bots(client, admin))["pagination"]["total"] == 2

    # Keeping one's own slug is not a conflict.
    r = await client.put(
        f"{URL}/{taken['id']}", json={"slug": "help-desk", "name": "One!"}, headers=admin.headers
    )
    assert r.status_code == 200, r.text


async def test_auto_slug_avoids_a_slug_chosen_by_hand(
    client: httpx.AsyncClient, admin: Any
) -> None:
    await create_bot(client, admin, name="Hand made", slug="sales")

    bot = await create_bot(client, admin, name="Sales", is_public=True)

    assert bot["slug"] != "sales"
    assert SLUG.match(bot["slug"])


async def test_making_a_bot_public_gives_it_a_slug(client: httpx.AsyncClient, admin: Any) -> None:
    bot = await create_bot(client, admin, name="Onboarding Guide")

    r = await client.put(f"{URL}/{bot['id']}", json={"is_public": True}, headers=admin.headers)

    assert r.status_code == 200, r.text
    assert r.json()["bot"]["slug"] == "onboarding-guide"


# --- list -------------------------------------------------------------------------------------


async def test_empty_list(client: httpx.AsyncClient, admin: Any) -> None:
    body = await list_bots(client, admin)

    assert body["bots"] == []
    page = body["pagination"]
    assert (page["page"], page["per_page"], page["total"]) == (1, 20, 0)
    assert page["pages"] in (0, 1)
    assert (page["has_next"], page["has_prev"]) == (False, False)


async def test_pagination_edges(client: httpx.AsyncClient, admin: Any) -> None:
    ids = [(await create_bot(client, admin, name=f"Bot {i}"))["id"] for i in range(3)]

    exact = await list_bots(client, admin, per_page=3)
    assert len(exact["bots"]) == 3
    assert exact["pagination"] == {
        "page": 1,
        "pages": 1,
        "per_page": 3,
        "total": 3,
        "has_next": False,
        "has_prev": False,
    }

    beyond = await list_bots(client, admin, per_page=3, page=2)
    assert beyond["bots"] == []
    assert beyond["pagination"]["total"] == 3
    assert beyond["pagination"]["pages"] == 1
    assert beyond["pagination"]["has_next"] is False

    ids.append((await create_bot(client, admin, name="Bot 3"))["id"])
    first = await list_bots(client, admin, per_page=3, page=1)
    second = await list_bots(client, admin, per_page=3, page=2)
    assert len(first["bots"]) == 3
    assert len(second["bots"]) == 1
    assert first["pagination"]["pages"] == second["pagination"]["pages"] == 2
    assert (first["pagination"]["has_next"], first["pagination"]["has_prev"]) == (True, False)
    assert (second["pagination"]["has_next"], second["pagination"]["has_prev"]) == (False, True)
    seen = [b["id"] for b in first["bots"] + second["bots"]]
    assert sorted(seen) == sorted(ids)

    largest = await list_bots(client, admin, per_page=100)
    assert len(largest["bots"]) == 4


async def test_bad_paging_parameters_are_422(client: httpx.AsyncClient, admin: Any) -> None:
    problems = []
    for params, field in [
        ({"per_page": 0}, "per_page"),
        ({"per_page": 101}, "per_page"),
        ({"page": 0}, "page"),
        ({"page": -1}, "page"),
        ({"page": "two"}, "page"),
        ({"status": "deleted"}, "status"),
        ({"search": "s" * 101}, "search"),
    ]:
        r = await client.get(URL, params=params, headers=admin.headers)
        problem = error_problem(r, 422, field)
        if problem:
            problems.append(f"{params}: {problem}")

    assert problems == []


async def test_list_is_newest_first(client: httpx.AsyncClient, admin: Any) -> None:
    for name in ("Oldest", "Middle", "Newest"):
        await create_bot(client, admin, name=name)

    body = await list_bots(client, admin)

    assert [b["name"] for b in body["bots"]] == ["Newest", "Middle", "Oldest"]


async def test_status_filter(client: httpx.AsyncClient, admin: Any) -> None:
    active = await create_bot(client, admin, name="A")
    inactive = await create_bot(client, admin, name="B", status="inactive")
    maintenance = await create_bot(client, admin, name="C", status="maintenance")

    for bot in (active, inactive, maintenance):
        body = await list_bots(client, admin, status=bot["status"])
        assert [b["id"] for b in body["bots"]] == [bot["id"]]
        assert body["pagination"]["total"] == 1

    await client.put(f"{URL}/{active['id']}", json={"status": "inactive"}, headers=admin.headers)
    body = await list_bots(client, admin, status="inactive")
    assert {b["id"] for b in body["bots"]} == {active["id"], inactive["id"]}


async def test_search_by_name(client: httpx.AsyncClient, admin: Any) -> None:
    for name in (
        "Billing Helper",
        "billing FAQ",
        "Sales",
        "100% Uptime",
        "1000 Uptime",
        "under_score",
        "underXscore",
        "back\\slash",
    ):
        await create_bot(client, admin, name=name, status="inactive" if "FAQ" in name else "active")

    async def names(**params: Any) -> set[str]:
        body = await list_bots(client, admin, **params)
        assert body["pagination"]["total"] == len(body["bots"])
        return {b["name"] for b in body["bots"]}

    assert await names(search="BILLING") == {"Billing Helper", "billing FAQ"}
    assert await names(search="lling h") == {"Billing Helper"}
    assert await names(search="%") == {"100% Uptime"}
    assert await names(search="0%") == {"100% Uptime"}
    assert await names(search="_") == {"under_score"}
    assert await names(search="\\") == {"back\\slash"}
    assert await names(search="nothing like it") == set()
    assert await names(search="billing", status="inactive") == {"billing FAQ"}
    assert len(await names(search="")) == 8


async def test_members_see_their_own_bots_and_admins_see_all(
    client: httpx.AsyncClient, admin: Any, accounts: Any
) -> None:
    alice, bob = await accounts("member"), await accounts("member")
    alices = {(await create_bot(client, alice, name=f"Alice {i}"))["id"] for i in range(2)}
    bobs = {(await create_bot(client, bob, name="Bob 1"))["id"]}
    admins = {(await create_bot(client, admin, name="Admin 1"))["id"]}

    for account, expected in ((alice, alices), (bob, bobs), (admin, alices | bobs | admins)):
        body = await list_bots(client, account)
        assert {b["id"] for b in body["bots"]} == expected
        assert body["pagination"]["total"] == len(expected)

    # A search or filter never reaches another member's bots.
    assert (await list_bots(client, bob, search="Alice"))["bots"] == []


async def test_list_items_never_contain_the_api_key(client: httpx.AsyncClient, admin: Any) -> None:
    created = [await create_bot(client, admin, name=f"Bot {i}") for i in range(2)]

    r = await client.get(URL, headers=admin.headers)

    assert r.status_code == 200
    for item in r.json()["bots"]:
        assert "api_key" not in item
        assert "api_key_hash" not in item
    for bot in created:
        assert bot["api_key"] not in r.text


# --- get, update, delete ----------------------------------------------------------------------


async def test_put_changes_only_the_fields_sent(client: httpx.AsyncClient, admin: Any) -> None:
    bot = await create_bot(client, admin, description="before", rate_limit_per_hour=50)
    before = await get_bot(client, admin, bot["id"])

    r = await client.put(
        f"{URL}/{bot['id']}",
        json={"description": "after", "confidence_threshold": 0.9, "status": "inactive"},
        headers=admin.headers,
    )

    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"message", "bot"}
    assert "api_key" not in body["bot"]
    after = await get_bot(client, admin, bot["id"])
    assert body["bot"] == after
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"description", "confidence_threshold", "status", "updated_at"}
    assert (after["description"], after["confidence_threshold"], after["status"]) == (
        "after",
        0.9,
        "inactive",
    )
    assert datetime.fromisoformat(after["updated_at"]) > datetime.fromisoformat(
        before["updated_at"]
    )
    assert after["created_at"] == before["created_at"]


async def test_put_with_an_empty_body_changes_nothing(
    client: httpx.AsyncClient, admin: Any
) -> None:
    bot = await create_bot(client, admin)
    before = await get_bot(client, admin, bot["id"])

    r = await client.put(f"{URL}/{bot['id']}", json={}, headers=admin.headers)

    assert r.status_code == 200, r.text
    after = await get_bot(client, admin, bot["id"])
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"
    }


INVALID_UPDATES: list[tuple[dict[str, Any], str]] = [
    ({"name": ""}, "name"),
    ({"name": "  "}, "name"),
    ({"name": "n" * 101}, "name"),
    ({"name": None}, "name"),
    ({"confidence_threshold": 2}, "confidence_threshold"),
    ({"handoff_confidence_threshold": -0.1}, "handoff_confidence_threshold"),
    ({"max_conversation_length": 1}, "max_conversation_length"),
    ({"max_conversation_length": 1001}, "max_conversation_length"),
    ({"rate_limit_per_hour": 0}, "rate_limit_per_hour"),
    ({"rate_limit_per_day": 0}, "rate_limit_per_day"),
    ({"rate_limit_per_hour": 10, "rate_limit_per_day": 9}, "rate_limit_per_day"),
    ({"status": "archived"}, "status"),
    ({"slug": "No Spaces"}, "slug"),
    ({"handoff_keywords": [f"kw {i}" for i in range(101)]}, "handoff_keywords"),
    ({"api_key_hash": "0" * 64}, "api_key_hash"),
    ({"owner_id": str(uuid.uuid4())}, "owner_id"),
    ({"is_public": None}, "is_public"),
    ({"status": None}, "status"),
    ({"max_conversation_length": None}, "max_conversation_length"),
]


async def test_invalid_update_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, admin: Any
) -> None:
    bot = await create_bot(client, admin)
    before = await get_bot(client, admin, bot["id"])

    problems = []
    for fields, field in INVALID_UPDATES:
        r = await client.put(f"{URL}/{bot['id']}", json=fields, headers=admin.headers)
        problem = error_problem(r, 422, field)
        if problem:
            problems.append(f"{fields!r:.80}: {problem}")

    assert problems == []
    assert await get_bot(client, admin, bot["id"]) == before


async def test_changing_one_rate_limit_past_the_other_is_refused(
    client: httpx.AsyncClient, admin: Any
) -> None:
    bot = await create_bot(client, admin, rate_limit_per_hour=100, rate_limit_per_day=1000)
    before = await get_bot(client, admin, bot["id"])

    for fields in ({"rate_limit_per_hour": 1001}, {"rate_limit_per_day": 99}):
        r = await client.put(f"{URL}/{bot['id']}", json=fields, headers=admin.headers)
        assert error_problem(r, (400, 422), "rate_limit_per_day") is None, fields

    assert await get_bot(client, admin, bot["id"]) == before
    r = await client.put(
        f"{URL}/{bot['id']}", json={"rate_limit_per_hour": 1000}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["bot"]["rate_limit_per_hour"] == 1000


async def test_delete_then_gone(client: httpx.AsyncClient, admin: Any) -> None:
    r = await client.post("/api/honey-jars", json={"name": "Docs"}, headers=admin.headers)
    assert r.status_code == 201, r.text
    jar = r.json()["honey_jar"]["id"]
    bot = await create_bot(client, admin, honey_jar_ids=[jar])
    keep = await create_bot(client, admin, name="Keep")

    r = await client.delete(f"{URL}/{bot['id']}", headers=admin.headers)
    assert r.status_code == 204
    assert r.content == b""

    path = f"{URL}/{bot['id']}"
    for method, extra in (("GET", {}), ("PUT", {"json": {"name": "x"}}), ("DELETE", {})):
        r = await client.request(method, path, headers=admin.headers, **extra)
        assert r.status_code == 404, (method, r.text)
        assert r.json()["error"] == "bot_not_found"
    r = await client.post(f"{path}/regenerate-api-key", headers=admin.headers)
    assert r.status_code == 404
    assert [b["id"] for b in (await list_bots(client, admin))["bots"]] == [keep["id"]]
    # The knowledge the bot answered from is not the bot's to delete.
    assert (await client.get(f"/api/honey-jars/{jar}", headers=admin.headers)).status_code == 200


async def test_unknown_and_malformed_ids(client: httpx.AsyncClient, admin: Any) -> None:
    r = await client.get(f"{URL}/{uuid.uuid4()}", headers=admin.headers)
    assert r.status_code == 404
    assert set(r.json()) == {"error", "detail"}

    r = await client.get(f"{URL}/not-a-uuid", headers=admin.headers)
    assert error_problem(r, 422, "bot_id") is None


async def test_a_member_cannot_reach_another_members_bot(
    client: httpx.AsyncClient, admin: Any, accounts: Any
) -> None:
    alice, bob = await accounts("member"), await accounts("member")
    bot = await create_bot(client, alice, name="Alice's")
    before = await get_bot(client, alice, bot["id"])
    path = f"{URL}/{bot['id']}"

    attempts = [
        await client.get(path, headers=bob.headers),
        await client.put(path, json={"name": "Mine now"}, headers=bob.headers),
        await client.post(f"{path}/regenerate-api-key", headers=bob.headers),
        await client.delete(path, headers=bob.headers),
    ]

    assert [r.status_code for r in attempts] == [404] * 4
    for r in attempts:
        assert r.json()["error"] == "bot_not_found"
        assert "Alice" not in r.text
    assert await get_bot(client, alice, bot["id"]) == before


async def test_an_admin_manages_a_members_bot(
    client: httpx.AsyncClient, admin: Any, accounts: Any
) -> None:
    alice = await accounts("member")
    bot = await create_bot(client, alice, name="Alice's")
    path = f"{URL}/{bot['id']}"

    assert (await get_bot(client, admin, bot["id"]))["owner_id"] == str(alice.id)
    r = await client.put(path, json={"status": "maintenance"}, headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json()["bot"]["owner_id"] == str(alice.id)
    assert (await get_bot(client, alice, bot["id"]))["status"] == "maintenance"
    assert (await client.delete(path, headers=admin.headers)).status_code == 204
    assert (await client.get(path, headers=alice.headers)).status_code == 404


async def test_agents_cannot_manage_bots(
    client: httpx.AsyncClient, admin: Any, accounts: Any
) -> None:
    agent = await accounts("agent")
    bot = await create_bot(client, admin)
    before = await get_bot(client, admin, bot["id"])
    path = f"{URL}/{bot['id']}"

    attempts = {
        "list": await client.get(URL, headers=agent.headers),
        "create": await client.post(URL, json={"name": "x"}, headers=agent.headers),
        "get": await client.get(path, headers=agent.headers),
        "update": await client.put(path, json={"name": "x"}, headers=agent.headers),
        "regenerate": await client.post(f"{path}/regenerate-api-key", headers=agent.headers),
        "delete": await client.delete(path, headers=agent.headers),
    }

    assert {k: r.status_code for k, r in attempts.items()} == dict.fromkeys(attempts, 403)
    for r in attempts.values():
        assert r.json()["error"] == "forbidden"
    assert await get_bot(client, admin, bot["id"]) == before
    assert (await list_bots(client, admin))["pagination"]["total"] == 1


@pytest.mark.parametrize("token", [None, "nat_not-a-real-token"])
async def test_bot_endpoints_need_a_valid_token(
    client: httpx.AsyncClient, admin: Any, token: str | None
) -> None:
    bot = await create_bot(client, admin)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    path = f"{URL}/{bot['id']}"

    attempts = [
        await client.get(URL, headers=headers),
        await client.post(URL, json={"name": "x"}, headers=headers),
        await client.get(path, headers=headers),
        await client.put(path, json={"name": "x"}, headers=headers),
        await client.post(f"{path}/regenerate-api-key", headers=headers),
        await client.delete(path, headers=headers),
    ]

    assert [r.status_code for r in attempts] == [401] * 6
    for r in attempts:
        assert set(r.json()) == {"error", "detail"}
    assert (await get_bot(client, admin, bot["id"]))["name"] == "Support"
