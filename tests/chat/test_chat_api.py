"""The chat API as an embedding application uses it: POST a message with the bot's key."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from nectar.app import create_app
from tests.conftest import make_settings
from tests.helpers import assert_error, create_bot

ARTICLE = """# Resetting your password

To reset your password, open the sign-in page and click **Forgot password**. We email you a
link that works for 60 minutes. Passwords need at least 10 characters.

## Locked accounts

After 5 wrong passwords the account locks for 15 minutes.
"""


async def make_jar(client: httpx.AsyncClient, account: Any, content: str = ARTICLE) -> str:
    r = await client.post("/api/honey-jars", json={"name": "Help"}, headers=account.headers)
    jar_id: str = r.json()["honey_jar"]["id"]
    r = await client.post(
        f"/api/honey-jars/{jar_id}/documents",
        json={"title": "Resetting your password", "content": content},
        headers=account.headers,
    )
    assert r.status_code == 201, r.text
    return jar_id


@pytest.fixture
async def bot(client: httpx.AsyncClient, admin: Any) -> dict[str, Any]:
    jar_id = await make_jar(client, admin)
    return await create_bot(client, admin, honey_jar_ids=[jar_id])


def key_headers(bot: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {bot['api_key']}"}


async def chat(
    client: httpx.AsyncClient,
    bot: dict[str, Any],
    message: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> httpx.Response:
    return await client.post(
        f"/api/nectar-bots/{bot['id']}/chat",
        json={"message": message, **extra},
        headers=headers or key_headers(bot),
    )


async def test_answer_from_the_knowledge_base(client: httpx.AsyncClient, bot: dict) -> None:
    r = await chat(client, bot, "how do I reset my password?")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {
        "conversation_id",
        "message_id",
        "reply",
        "confidence",
        "handled_by",
        "sources",
        "handoff",
    }
    assert "Forgot password" in body["reply"]
    assert 0.0 <= body["confidence"] <= 1.0
    assert body["handled_by"] == "bot"
    assert body["handoff"] is None
    assert body["sources"][0]["title"] == "Resetting your password"
    assert r.headers["X-RateLimit-Limit"] == "100"
    assert r.headers["X-RateLimit-Remaining"] == "99"
    assert 0 < int(r.headers["X-RateLimit-Reset"]) <= 3600


async def test_conversation_continues_and_reads_back(client: httpx.AsyncClient, bot: dict) -> None:
    first = (await chat(client, bot, "how do I reset my password?")).json()
    cid = first["conversation_id"]
    second = (await chat(client, bot, "what if the account is locked", conversation_id=cid)).json()
    assert second["conversation_id"] == cid
    url = f"/api/nectar-bots/{bot['id']}/conversations/{cid}/messages"
    r = await client.get(url, headers=key_headers(bot))
    assert r.status_code == 200, r.text
    messages = r.json()["messages"]
    assert [m["role"] for m in messages] == ["user", "bot", "user", "bot"]
    assert [m["seq"] for m in messages] == [1, 2, 3, 4]
    assert messages[0]["content"] == "how do I reset my password?"
    assert messages[1]["id"] == first["message_id"]
    assert messages[3]["confidence"] == second["confidence"]
    assert r.json()["has_more"] is False
    later = await client.get(url, params={"after": first["message_id"]}, headers=key_headers(bot))
    assert [m["seq"] for m in later.json()["messages"]] == [3, 4]
    page = await client.get(url, params={"limit": 3}, headers=key_headers(bot))
    assert len(page.json()["messages"]) == 3
    assert page.json()["has_more"] is True
    unknown = await client.get(url, params={"after": str(uuid.uuid4())}, headers=key_headers(bot))
    assert_error(unknown, 404, "message_not_found")


async def test_x_api_key_header_works(client: httpx.AsyncClient, bot: dict) -> None:
    r = await chat(client, bot, "reset password", headers={"X-API-Key": bot["api_key"]})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nb_wrong"},
        {"X-API-Key": "nb_" + "x" * 43},
        {"Authorization": "Basic Zm9vOmJhcg=="},
    ],
)
async def test_missing_or_wrong_key_is_401(
    client: httpx.AsyncClient, bot: dict, headers: dict[str, str]
) -> None:
    r = await client.post(
        f"/api/nectar-bots/{bot['id']}/chat", json={"message": "hi"}, headers=headers
    )
    assert_error(r, 401, "invalid_api_key")


async def test_other_bots_key_and_conversation_do_not_cross(
    client: httpx.AsyncClient, admin: Any, bot: dict
) -> None:
    other = await create_bot(client, admin, name="Other")
    r = await client.post(
        f"/api/nectar-bots/{bot['id']}/chat", json={"message": "hi"}, headers=key_headers(other)
    )
    assert_error(r, 401, "invalid_api_key")
    cid = (await chat(client, bot, "reset password")).json()["conversation_id"]
    r = await chat(client, other, "hello", conversation_id=cid)
    assert_error(r, 404, "conversation_not_found")
    r = await client.get(
        f"/api/nectar-bots/{other['id']}/conversations/{cid}/messages", headers=key_headers(other)
    )
    assert_error(r, 404, "conversation_not_found")
    r = await chat(client, bot, "hello", conversation_id=str(uuid.uuid4()))
    assert_error(r, 404, "conversation_not_found")


async def test_regenerated_key_replaces_the_old_one_at_once(
    client: httpx.AsyncClient, admin: Any, bot: dict
) -> None:
    assert (await chat(client, bot, "reset password")).status_code == 200  # now cached
    r = await client.post(f"/api/nectar-bots/{bot['id']}/regenerate-api-key", headers=admin.headers)
    new_key = r.json()["api_key"]
    assert_error(await chat(client, bot, "reset password"), 401)
    r = await chat(client, {**bot, "api_key": new_key}, "reset password")
    assert r.status_code == 200


async def test_deleted_bot_key_stops_working(
    client: httpx.AsyncClient, admin: Any, bot: dict
) -> None:
    assert (await chat(client, bot, "reset password")).status_code == 200
    await client.delete(f"/api/nectar-bots/{bot['id']}", headers=admin.headers)
    assert_error(await chat(client, bot, "reset password"), 401)


async def test_inactive_and_maintenance_bots(
    client: httpx.AsyncClient, admin: Any, bot: dict
) -> None:
    url = f"/api/nectar-bots/{bot['id']}"
    await client.put(url, json={"status": "inactive"}, headers=admin.headers)
    assert_error(await chat(client, bot, "reset password"), 403, "bot_inactive")
    await client.put(url, json={"status": "maintenance"}, headers=admin.headers)
    r = await chat(client, bot, "reset password")
    assert_error(r, 503, "bot_maintenance")
    assert r.headers["Retry-After"]
    await client.put(url, json={"status": "active"}, headers=admin.headers)
    assert (await chat(client, bot, "reset password")).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"message": ""}, "message"),
        ({"message": "   "}, "message"),
        ({"message": "x" * 4001}, "message"),
        ({}, "message"),
        ({"message": 42}, "message"),
        ({"message": "hi", "conversation_id": "not-a-uuid"}, "conversation_id"),
        ({"message": "hi", "metadata": {"blob": "x" * 9000}}, "metadata"),
        ({"message": "hi", "metadata": ["a"]}, "metadata"),
        ({"message": "hi", "user": {"email": "no-at-sign"}}, "user.email"),
        ({"message": "hi", "user": {"id": "x" * 201}}, "user.id"),
        ({"message": "hi", "surprise": 1}, "surprise"),
        # PostgreSQL cannot store NUL; refused on SQLite too, before anything is stored.
        ({"message": "reset\u0000password"}, "NUL"),
        ({"message": "hi", "user": {"name": "A\u0000da"}}, "NUL"),
        ({"message": "hi", "metadata": {"page": ["/x\u0000"]}}, "NUL"),
        ({"message": "hi", "metadata": {"k\u0000": 1}}, "NUL"),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    client: httpx.AsyncClient, bot: dict, body: dict, field: str
) -> None:
    r = await client.post(f"/api/nectar-bots/{bot['id']}/chat", json=body, headers=key_headers(bot))
    detail = assert_error(r, 422, "validation_error")["detail"]
    assert field in detail


async def test_malformed_json_is_422(client: httpx.AsyncClient, bot: dict) -> None:
    r = await client.post(
        f"/api/nectar-bots/{bot['id']}/chat",
        content=b'{"message": ',
        headers={**key_headers(bot), "Content-Type": "application/json"},
    )
    assert_error(r, 422)


async def test_user_and_metadata_are_kept(client: httpx.AsyncClient, bot: dict, db: Any) -> None:
    r = await chat(
        client,
        bot,
        "reset password",
        user={"id": "u-1", "name": "Ada", "email": "ada@example.com"},
        metadata={"page": "/pricing"},
    )
    cid = uuid.UUID(r.json()["conversation_id"])
    async with db.connect() as conn:
        row = (
            await conn.execute(
                sa.text(
                    "SELECT user_ref, user_name, user_email, metadata FROM "
                    "nectar_bot_conversations WHERE id = :id"
                ).bindparams(sa.bindparam("id", type_=sa.Uuid())),
                {"id": cid},
            )
        ).one()
    assert row[:3] == ("u-1", "Ada", "ada@example.com")
    assert "/pricing" in str(row[3])


async def test_every_turn_leaves_a_usage_row(client: httpx.AsyncClient, bot: dict, db: Any) -> None:
    await chat(client, bot, "reset password")
    await chat(client, bot, "zebra crossing tax law")
    async with db.connect() as conn:
        rows = (
            await conn.execute(
                sa.text(
                    "SELECT knowledge_matches, response_time_ms, confidence, rate_limit_hit "
                    "FROM nectar_bot_usage ORDER BY created_at"
                )
            )
        ).all()
    assert len(rows) == 2
    assert rows[0][0] >= 1
    assert rows[0][1] is not None
    assert rows[0][2] is not None
    assert rows[1][0] == 0
    assert not any(r[3] for r in rows)


async def test_bot_without_jars_answers_with_low_confidence(
    client: httpx.AsyncClient, admin: Any
) -> None:
    empty = await create_bot(client, admin, name="Empty")
    r = await chat(client, empty, "how do I reset my password?")
    assert r.status_code == 200
    assert r.json()["confidence"] < 0.3
    assert r.json()["reply"]


async def test_concurrent_turns_in_one_conversation_keep_order(
    client: httpx.AsyncClient, bot: dict
) -> None:
    cid = (await chat(client, bot, "reset password")).json()["conversation_id"]
    results = await asyncio.gather(
        *(chat(client, bot, f"question {i} about passwords", conversation_id=cid) for i in range(8))
    )
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    r = await client.get(
        f"/api/nectar-bots/{bot['id']}/conversations/{cid}/messages", headers=key_headers(bot)
    )
    seqs = [m["seq"] for m in r.json()["messages"]]
    assert seqs == list(range(1, 19))


# --- public bots ---------------------------------------------------------------------------


async def test_public_bot_chats_without_a_key(client: httpx.AsyncClient, admin: Any) -> None:
    jar_id = await make_jar(client, admin)
    bot = await create_bot(
        client, admin, name="Public Help", is_public=True, honey_jar_ids=[jar_id]
    )
    slug = bot["slug"]
    info = await client.get(f"/api/nectar-bots/public/{slug}")
    assert info.status_code == 200
    assert info.json() == {"slug": slug, "name": "Public Help", "description": ""}
    r = await client.post(
        f"/api/nectar-bots/public/{slug}/chat", json={"message": "reset password"}
    )
    assert r.status_code == 200, r.text
    cid = r.json()["conversation_id"]
    r = await client.get(f"/api/nectar-bots/public/{slug}/conversations/{cid}/messages")
    assert [m["role"] for m in r.json()["messages"]] == ["user", "bot"]


async def test_private_bot_is_not_public(client: httpx.AsyncClient, admin: Any) -> None:
    bot = await create_bot(client, admin, name="Private", slug="private-bot")
    assert_error(await client.get("/api/nectar-bots/public/private-bot"), 404)
    r = await client.post("/api/nectar-bots/public/private-bot/chat", json={"message": "hi"})
    assert_error(r, 404)
    assert_error(await client.get("/api/nectar-bots/public/no-such-bot"), 404)
    del bot


async def test_public_chat_is_limited_per_client_ip(app: Any, admin: Any) -> None:
    async def client_from(ip: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(ip, 5000))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    async with await client_from("192.0.2.1") as a, await client_from("192.0.2.2") as b:
        bot = await create_bot(a, admin, name="Limited", is_public=True, rate_limit_per_hour=2)
        url = f"/api/nectar-bots/public/{bot['slug']}/chat"
        for _ in range(2):
            assert (await a.post(url, json={"message": "hi"})).status_code == 200
        limited = await a.post(url, json={"message": "hi"})
        assert_error(limited, 429, "rate_limited")
        assert (await b.post(url, json={"message": "hi"})).status_code == 200


# --- replicas -------------------------------------------------------------------------------


async def test_regenerated_key_is_refused_by_another_replica_at_once(
    database_url: str, admin: Any, redis_url: str, redis_prefix: str
) -> None:
    """Two API processes share PostgreSQL/SQLite and Redis: a key regenerated through one is
    refused by the other on its very next request, although that one had it cached."""
    settings = make_settings(database_url, redis_url=redis_url, redis_prefix=redis_prefix)
    one, two = create_app(settings), create_app(settings)
    async with one.router.lifespan_context(one), two.router.lifespan_context(two):
        a = httpx.AsyncClient(transport=httpx.ASGITransport(app=one), base_url="http://a")
        b = httpx.AsyncClient(transport=httpx.ASGITransport(app=two), base_url="http://b")
        async with a, b:
            bot = await create_bot(a, admin)
            assert (await chat(b, bot, "hello")).status_code == 200  # cached in replica two
            r = await a.post(
                f"/api/nectar-bots/{bot['id']}/regenerate-api-key", headers=admin.headers
            )
            assert r.status_code == 200
            assert_error(await chat(b, bot, "hello"), 401)
            assert (await chat(b, {**bot, "api_key": r.json()["api_key"]}, "hi")).status_code == 200


async def test_public_endpoints_never_serve_a_conversation_started_with_the_key(
    client: httpx.AsyncClient, admin: Any
) -> None:
    jar_id = await make_jar(client, admin)
    bot = await create_bot(client, admin, name="Both Ways", is_public=True, honey_jar_ids=[jar_id])
    private = (await chat(client, bot, "reset password")).json()["conversation_id"]
    base = f"/api/nectar-bots/public/{bot['slug']}"
    assert_error(await client.get(f"{base}/conversations/{private}/messages"), 404)
    assert_error(await client.get(f"{base}/conversations/{private}/stream"), 404)
    r = await client.post(f"{base}/chat", json={"message": "hi", "conversation_id": private})
    assert_error(r, 404)
    # The owner's key still reads both kinds.
    public = (await client.post(f"{base}/chat", json={"message": "reset password"})).json()
    r = await client.get(
        f"/api/nectar-bots/{bot['id']}/conversations/{public['conversation_id']}/messages",
        headers=key_headers(bot),
    )
    assert r.status_code == 200


@pytest.mark.parametrize("local", [True, False], ids=["connection-held", "connection-released"])
async def test_conversation_deleted_during_the_turn_is_404_and_stores_nothing(
    app: Any, client: httpx.AsyncClient, bot: dict, db: Any, local: bool
) -> None:
    """The turn reads the conversation, answers outside any transaction, then writes: a
    conversation deleted in between (its bot deleted, say) is a 404, never a 500 or an
    orphan message; whether the turn kept its connection meanwhile (a local responder, on
    PostgreSQL) or not."""
    first = await chat(client, bot, "reset password")
    cid = uuid.UUID(first.json()["conversation_id"])
    services = app.state.services
    real = services.responder

    class DeletingResponder:
        name = "deleting"

        def __init__(self) -> None:
            self.local = local

        async def answer(self, question: Any) -> Any:
            async with db.begin() as conn:
                await conn.execute(
                    sa.text("DELETE FROM nectar_bot_conversations WHERE id = :id").bindparams(
                        sa.bindparam("id", type_=sa.Uuid())
                    ),
                    {"id": cid},
                )
            return await real.answer(question)

    services.responder = DeletingResponder()
    try:
        r = await chat(client, bot, "and the locked account?", conversation_id=str(cid))
    finally:
        services.responder = real
    assert_error(r, 404)
    async with db.connect() as conn:
        left = (await conn.execute(sa.text("SELECT count(*) FROM nectar_bot_messages"))).scalar()
        usage = (await conn.execute(sa.text("SELECT count(*) FROM nectar_bot_usage"))).scalar()
    # The first turn's rows went with the conversation (cascade); the refused turn left none.
    assert (left, usage) == (0, 0)


@pytest.mark.parametrize("local", [True, False], ids=["local-responder", "calling-out"])
async def test_a_turn_takes_one_connection_unless_its_responder_calls_out(
    app: Any,
    client: httpx.AsyncClient,
    bot: dict,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    local: bool,
) -> None:
    """PostgreSQL: a turn whose responder only computes reads and writes on one pooled
    connection; one whose responder may wait on a model API gives it back in between."""
    if backend != "postgres":
        pytest.skip("SQLite's store has no pool of its own")
    services = app.state.services
    first = await chat(client, bot, "reset password")
    turns, real = services.turns, services.responder
    checkouts: list[object] = []
    acquire = turns._acquire

    async def counted() -> Any:
        conn = await acquire()
        checkouts.append(conn)
        return conn

    class Responder:
        name = "wrapped"

        def __init__(self) -> None:
            self.local = local

        async def answer(self, question: Any) -> Any:
            return await real.answer(question)

    monkeypatch.setattr(turns, "_acquire", counted)
    services.responder = Responder()
    try:
        r = await chat(
            client, bot, "and the locked account?", conversation_id=first.json()["conversation_id"]
        )
    finally:
        services.responder = real
    assert r.status_code == 200, r.text
    assert r.json()["handled_by"] == "bot"
    assert len(checkouts) == (1 if local else 2)
