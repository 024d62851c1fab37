"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from nectar.db import UTCDateTime, utcnow


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is an error in the contract's shape: exactly ``{"error", "detail"}``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error", "detail"}, body
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    if code is not None:
        assert body["error"] == code, body
    return body


async def expire_tokens(engine: AsyncEngine, user_id: uuid.UUID) -> None:
    """Move every access token of this user one second into the past."""
    async with engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE access_tokens SET expires_at = :past WHERE user_id = :uid").bindparams(
                sa.bindparam("past", type_=UTCDateTime()),
                sa.bindparam("uid", type_=sa.Uuid()),
            ),
            {"past": utcnow() - timedelta(seconds=1), "uid": user_id},
        )


async def dump_database(engine: AsyncEngine) -> str:
    """Every row of every table in the database as text, to prove a secret is stored nowhere."""
    parts: list[str] = []
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        for name in names:
            rows = await conn.execute(sa.text(f'SELECT * FROM "{name}"'))
            parts.extend(f"{name}: {tuple(row)!r}" for row in rows)
    return "\n".join(parts)


async def create_bot(client: httpx.AsyncClient, account: Any, **fields: Any) -> dict[str, Any]:
    """Create a bot through the API (name defaults to "Support"); the ``bot`` object, with the
    one-time ``api_key``."""
    fields.setdefault("name", "Support")
    response = await client.post("/api/nectar-bots", json=fields, headers=account.headers)
    assert response.status_code == 201, response.text
    bot: dict[str, Any] = response.json()["bot"]
    return bot
