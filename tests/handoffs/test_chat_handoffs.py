"""Handoffs opened by the chat turn itself, end to end through the HTTP API."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import httpx
import pytest

from nectar.chat import store
from tests.helpers import create_bot

ARTICLES = {
    "Resetting your password": (
        "# Resetting your password\n\nOpen the sign-in page and click **Forgot password**. "
        "The emailed link works for 60 minutes. Passwords need at least 10 characters."
    ),
    "Exporting your data": (
        "# Exporting your data\n\nGo to **Settings > Account > Export** and click **Start "
        "export**. We email a download link that stays valid for 7 days."
    ),
}


@pytest.fixture
async def bot(client: httpx.AsyncClient, admin: Any) -> dict[str, Any]:
    r = await client.post("/api/honey-jars", json={"name": "Help"}, headers=admin.headers)
    jar = r.json()["honey_jar"]["id"]
    for title, content in ARTICLES.items():
        await client.post(
            f"/api/honey-jars/{jar}/documents",
            json={"title": title, "content": content},
            headers=admin.headers,
        )
    return await create_bot(client, admin, honey_jar_ids=[jar], max_conversation_length=6)


async def say(client: httpx.AsyncClient, bot: dict, text: str, cid: str | None = None) -> dict:
    body: dict[str, Any] = {"message": text}
    if cid:
        body["conversation_id"] = cid
    r = await client.post(
        f"/api/nectar-bots/{bot['id']}/chat", json=body, headers={"X-API-Key": bot["api_key"]}
    )
    assert r.status_code == 200, r.text
    result: dict = r.json()
    return result


async def test_bot_command_hands_off_with_a_notice(
    client: httpx.AsyncClient, bot: dict, admin: Any
) -> None:
    turn = await say(client, bot, "/agent please")
    assert turn["handled_by"] == "human"
    assert turn["handoff"]["reason"] == "bot_command"
    assert turn["handoff"]["status"] == "pending"
    assert "support team" in turn["reply"]
    assert turn["sources"] == []
    detail = (
        await client.get(
            f"/api/nectar-bots/handoffs/{turn['handoff']['id']}", headers=admin.headers
        )
    ).json()
    assert detail["evidence"]
    assert detail["context"]["trigger_message"]["content"] == "/agent please"
    # The bot's withheld draft is kept for the agent.
    assert "bot_draft" in detail["context"]


async def test_answerable_questions_do_not_hand_off(client: httpx.AsyncClient, bot: dict) -> None:
    for text in ("how do I reset my password?", "how do I export my data"):
        turn = await say(client, bot, text)
        assert turn["handoff"] is None, (text, turn)
        assert turn["handled_by"] == "bot"


async def test_asking_for_a_person_hands_off(client: httpx.AsyncClient, bot: dict) -> None:
    turn = await say(client, bot, "can I please talk to a real person about this?")
    assert turn["handoff"]["reason"] in ("explicit_request", "keyword_detected")
    again = await say(client, bot, "hello? anyone?", turn["conversation_id"])
    assert again["handled_by"] == "human"
    assert again["reply"] is None
    assert again["handoff"]["id"] == turn["handoff"]["id"]  # no second handoff


async def test_a_long_conversation_hands_off_once_and_counts_again_after_hand_back(
    client: httpx.AsyncClient, bot: dict, admin: Any
) -> None:
    """max_conversation_length 6: the 4th user message would make 7 stored messages."""
    cid = None
    questions = [
        "how do I reset my password?",
        "how long does the export download link stay valid",
        "what is the minimum password length",
    ]
    for question in questions:
        turn = await say(client, bot, question, cid)
        cid = turn["conversation_id"]
        assert turn["handoff"] is None, (question, turn)
    turn = await say(client, bot, "where in settings do I start an export", cid)
    assert turn["handoff"]["reason"] == "conversation_too_long"
    hid = turn["handoff"]["id"]
    r = await client.post(f"/api/nectar-bots/handoffs/{hid}/resolve", headers=admin.headers)
    assert r.status_code == 200, r.text
    # Back with the bot: the count starts again, so the next question is answered.
    back = await say(client, bot, "how many minutes does the reset link work", cid)
    assert back["handled_by"] == "bot"
    assert back["handoff"] is None


async def test_handoff_disabled_bot_never_hands_off(client: httpx.AsyncClient, admin: Any) -> None:
    quiet = await create_bot(client, admin, name="Quiet", handoff_enabled=False)
    turn = await say(client, quiet, "/human now")
    assert turn["handoff"] is None
    assert turn["handled_by"] == "bot"


async def test_disabled_trigger_is_skipped(
    client: httpx.AsyncClient, bot: dict, admin: Any
) -> None:
    r = await client.post(
        f"/api/nectar-bots/{bot['id']}/handoff",
        json={"triggers": {"disabled": ["bot_command"]}},
        headers=admin.headers,
    )
    assert r.status_code == 200
    turn = await say(client, bot, "/handoff how do I reset my password?")
    assert turn["handoff"] is None or turn["handoff"]["reason"] != "bot_command"


async def test_turns_racing_to_hand_off_open_one_handoff(
    client: httpx.AsyncClient, bot: dict, admin: Any
) -> None:
    """Several messages of one conversation that each trigger a handoff at the same moment:
    one handoff opens, every turn reports it, and every message is kept for the agent."""
    first = await say(client, bot, "how do I reset my password?")
    cid = first["conversation_id"]
    turns = await asyncio.gather(
        *(say(client, bot, f"/agent now please ({i})", cid) for i in range(4))
    )
    handoff_ids = {t["handoff"]["id"] for t in turns}
    assert len(handoff_ids) == 1
    assert all(t["handled_by"] == "human" for t in turns)
    listed = await client.get(
        f"/api/nectar-bots/handoffs?bot_id={bot['id']}&status=active", headers=admin.headers
    )
    assert [h["id"] for h in listed.json()["handoffs"]] == list(handoff_ids)
    messages = await client.get(
        f"/api/nectar-bots/{bot['id']}/conversations/{cid}/messages",
        headers={"X-API-Key": bot["api_key"]},
    )
    texts = [m["content"] for m in messages.json()["messages"] if m["role"] == "user"]
    assert sorted(texts[1:]) == [f"/agent now please ({i})" for i in range(4)]
    seqs = [m["seq"] for m in messages.json()["messages"]]
    assert seqs == list(range(1, len(seqs) + 1))


@pytest.fixture
async def pg_conversation(
    client: httpx.AsyncClient, bot: dict, backend: str, database_url: str
) -> tuple[uuid.UUID, str]:
    """A conversation the bot has answered once, and a DSN for another writer, on
    PostgreSQL, whose handoff turn builds its rows between two statements."""
    if backend != "postgres":
        pytest.skip("SQLite's turn is one transaction")
    first = await say(client, bot, "how do I reset my password?")
    return uuid.UUID(first["conversation_id"]), database_url.replace(
        "postgresql+asyncpg://", "postgresql://", 1
    )


async def test_a_message_stored_while_the_handoff_is_built_is_kept_in_order(
    client: httpx.AsyncClient,
    bot: dict,
    admin: Any,
    pg_conversation: tuple[uuid.UUID, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL the turn reads, builds the handoff in Python, then stores it in one
    statement guarded by the message counter it read. An agent's message landing in between
    makes it read and build again: both keep their places and the snapshot has both."""
    cid, dsn = pg_conversation
    original = store._handoff_write
    counts: list[int | None] = []

    def interloping(turn: Any, opening: Any, count: int | None, *rest: Any) -> Any:
        counts.append(count)
        if len(counts) == 1:  # another writer's message, committed right now
            commit_now(
                dsn,
                "WITH c AS (UPDATE nectar_bot_conversations SET message_count = message_count + 1"
                " WHERE id = $1 RETURNING message_count)"
                " INSERT INTO nectar_bot_messages (id, conversation_id, seq, role, content,"
                " created_at) SELECT $2, $1, c.message_count, 'agent', 'meanwhile', now() FROM c",
                cid,
                uuid.uuid4(),
            )
        return original(turn, opening, count, *rest)

    monkeypatch.setattr(store, "_handoff_write", interloping)
    turn = await say(client, bot, "/agent please", str(cid))
    assert counts == [2, 3]  # read again after the guard failed
    assert turn["handoff"]["status"] == "pending"
    listed = await client.get(
        f"/api/nectar-bots/{bot['id']}/conversations/{cid}/messages",
        headers={"X-API-Key": bot["api_key"]},
    )
    messages = [(m["seq"], m["role"], m["content"]) for m in listed.json()["messages"]]
    assert [m[:2] for m in messages] == [
        (1, "user"),
        (2, "bot"),
        (3, "agent"),
        (4, "user"),
        (5, "system"),
    ]
    assert messages[3][2] == "/agent please"
    detail = (
        await client.get(
            f"/api/nectar-bots/handoffs/{turn['handoff']['id']}", headers=admin.headers
        )
    ).json()
    snapshot = [(m["seq"], m["content"]) for m in detail["context"]["messages"]]
    assert snapshot[2:] == [(3, "meanwhile"), (4, "/agent please")]
    assert detail["context"]["trigger_message"]["seq"] == 4


def commit_now(dsn: str, sql: str, *args: Any) -> None:
    """Another writer's statement, committed before this returns (from a thread of its own,
    while the turn under test is suspended in a synchronous step)."""

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql, *args)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, run()).result()


async def test_a_conversation_closed_while_the_handoff_is_built_stays_closed(
    client: httpx.AsyncClient,
    bot: dict,
    pg_conversation: tuple[uuid.UUID, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Closed by an agent between the turn's read and its write: the turn is the 409 any
    message to a closed conversation gets, stores nothing, and does not reopen it."""
    cid, dsn = pg_conversation
    original = store._handoff_write

    def closing(turn: Any, opening: Any, *read: Any) -> Any:
        commit_now(
            dsn, "UPDATE nectar_bot_conversations SET handled_by = 'closed' WHERE id = $1", cid
        )
        return original(turn, opening, *read)

    monkeypatch.setattr(store, "_handoff_write", closing)
    r = await client.post(
        f"/api/nectar-bots/{bot['id']}/chat",
        json={"message": "/agent please", "conversation_id": str(cid)},
        headers={"X-API-Key": bot["api_key"]},
    )
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "conversation_closed"
    listed = await client.get(
        f"/api/nectar-bots/{bot['id']}/conversations/{cid}/messages",
        headers={"X-API-Key": bot["api_key"]},
    )
    assert [m["role"] for m in listed.json()["messages"]] == ["user", "bot"]
    again = await client.post(
        f"/api/nectar-bots/{bot['id']}/chat",
        json={"message": "hello?", "conversation_id": str(cid)},
        headers={"X-API-Key": bot["api_key"]},
    )
    assert again.status_code == 409
