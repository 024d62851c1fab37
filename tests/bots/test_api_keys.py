"""Bot API keys: shown once, stored only as a sha256 hash, replaced by regeneration."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import create_bot, dump_database

URL = "/api/nectar-bots"
KEY = re.compile(r"^nb_[A-Za-z0-9_-]{43}$")


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def stored_key_columns(engine: AsyncEngine, bot_id: str) -> tuple[str, str]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.text(
                    "SELECT api_key_hash, api_key_hint FROM nectar_bots WHERE id = :id"
                ).bindparams(sa.bindparam("id", type_=sa.Uuid())),
                {"id": uuid.UUID(bot_id)},
            )
        ).one()
    return row[0], row[1]


def assert_hint_of(hint: str, key: str) -> None:
    """A recognisable hint: the start of the key, an ellipsis, its last four characters."""
    prefix, sep, last4 = hint.partition("…")
    assert sep, hint
    assert prefix.startswith("nb_")
    assert key.startswith(prefix)
    assert last4 == key[-4:]
    # Far too little of the key to be useful to anyone who reads it.
    assert len(prefix) + len(last4) <= 12


def assert_nowhere(dump: str, *keys: str) -> None:
    for key in keys:
        assert key not in dump
        assert key.removeprefix("nb_") not in dump


async def test_key_is_shown_once_in_full(client: httpx.AsyncClient, admin: Any) -> None:
    bot = await create_bot(client, admin)
    other = await create_bot(client, admin, name="Other")
    key = bot["api_key"]

    assert KEY.match(key), key
    assert KEY.match(other["api_key"])
    assert other["api_key"] != key
    assert_hint_of(bot["api_key_hint"], key)

    path = f"{URL}/{bot['id']}"
    seen_later = [
        await client.get(path, headers=admin.headers),
        await client.get(URL, headers=admin.headers),
        await client.put(path, json={"description": "changed"}, headers=admin.headers),
    ]
    for r in seen_later:
        assert r.status_code == 200, r.text
        assert key not in r.text
        assert key.removeprefix("nb_") not in r.text
        assert 'api_key"' not in r.text
    assert seen_later[0].json()["api_key_hint"] == bot["api_key_hint"]


async def test_plain_key_is_nowhere_in_the_database(
    client: httpx.AsyncClient, admin: Any, db: AsyncEngine
) -> None:
    bot = await create_bot(client, admin, is_public=True, handoff_keywords=["refund"])
    key = bot["api_key"]

    dump = await dump_database(db)

    assert bot["id"].replace("-", "") in dump.replace("-", "")  # the dump does hold the bot
    assert_nowhere(dump, key)
    stored_hash, stored_hint = await stored_key_columns(db, bot["id"])
    assert stored_hash == sha256(key)
    assert stored_hash in dump
    assert stored_hint == bot["api_key_hint"]


async def test_regenerate_replaces_the_key(
    client: httpx.AsyncClient, admin: Any, db: AsyncEngine
) -> None:
    bot = await create_bot(client, admin)
    old_key = bot["api_key"]
    path = f"{URL}/{bot['id']}"
    before = (await client.get(path, headers=admin.headers)).json()

    r = await client.post(f"{path}/regenerate-api-key", headers=admin.headers)

    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"message", "api_key"}
    assert body["message"]
    new_key = body["api_key"]
    assert KEY.match(new_key), new_key
    assert new_key != old_key

    stored_hash, _ = await stored_key_columns(db, bot["id"])
    assert stored_hash == sha256(new_key)
    assert stored_hash != sha256(old_key)
    assert_nowhere(await dump_database(db), old_key, new_key)

    after = (await client.get(path, headers=admin.headers)).json()
    assert after["api_key_hint"] != before["api_key_hint"]
    assert_hint_of(after["api_key_hint"], new_key)
    assert when(after["api_key_created_at"]) > when(before["api_key_created_at"])
    unchanged = {"api_key_hint", "api_key_created_at", "updated_at"}
    assert {k: v for k, v in after.items() if k not in unchanged} == {
        k: v for k, v in before.items() if k not in unchanged
    }


async def test_regenerating_twice_gives_distinct_keys(
    client: httpx.AsyncClient, admin: Any, db: AsyncEngine
) -> None:
    bot = await create_bot(client, admin)
    path = f"{URL}/{bot['id']}/regenerate-api-key"

    first = (await client.post(path, headers=admin.headers)).json()["api_key"]
    second = (await client.post(path, headers=admin.headers)).json()["api_key"]

    assert len({bot["api_key"], first, second}) == 3
    stored_hash, stored_hint = await stored_key_columns(db, bot["id"])
    assert stored_hash == sha256(second)
    assert_hint_of(stored_hint, second)
    assert_nowhere(await dump_database(db), bot["api_key"], first, second)


async def test_a_member_regenerates_only_their_own_key(
    client: httpx.AsyncClient, admin: Any, accounts: Any, db: AsyncEngine
) -> None:
    alice, bob = await accounts("member"), await accounts("member")
    bot = await create_bot(client, alice)
    path = f"{URL}/{bot['id']}/regenerate-api-key"

    refused = await client.post(path, headers=bob.headers)
    assert refused.status_code == 404
    assert (await stored_key_columns(db, bot["id"]))[0] == sha256(bot["api_key"])

    own = await client.post(path, headers=alice.headers)
    assert own.status_code == 200, own.text
    assert (await stored_key_columns(db, bot["id"]))[0] == sha256(own.json()["api_key"])


async def test_only_the_newest_key_opens_the_chat(client: httpx.AsyncClient, admin: Any) -> None:
    bot = await create_bot(client, admin)
    chat = f"{URL}/{bot['id']}/chat"

    def ask(key: str) -> Any:
        return client.post(chat, json={"message": "hello"}, headers={"X-API-Key": key})

    assert (await ask(bot["api_key"])).status_code == 200
    r = await client.post(f"{URL}/{bot['id']}/regenerate-api-key", headers=admin.headers)
    new_key = r.json()["api_key"]

    old = await ask(bot["api_key"])
    assert old.status_code == 401, old.text
    assert set(old.json()) == {"error", "detail"}
    assert (await ask(new_key)).status_code == 200
