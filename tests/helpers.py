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


async def issue_token(engine: AsyncEngine, user_id: uuid.UUID) -> str:
    """A fresh, valid access token for this user (as sign-in would give, without argon2)."""
    from nectar import security

    token = security.new_access_token()
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO access_tokens (id, user_id, token_hash, created_at, expires_at) "
                "VALUES (:id, :uid, :th, :now, :exp)"
            ).bindparams(
                sa.bindparam("id", type_=sa.Uuid()),
                sa.bindparam("uid", type_=sa.Uuid()),
                sa.bindparam("now", type_=UTCDateTime()),
                sa.bindparam("exp", type_=UTCDateTime()),
            ),
            {
                "id": uuid.uuid4(),
                "uid": user_id,
                "th": security.hash_secret(token),
                "now": now,
                "exp": now + timedelta(hours=1),
            },
        )
    return token


async def open_stream(
    app: Any, url: str, headers: dict[str, str] | None = None, *, wait: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """GET a (possibly endless) streaming endpoint: status, headers and the first bytes.

    httpx's ASGITransport waits for the whole response, which never comes from an event
    stream, so this drives the ASGI app directly and disconnects once the response started.
    """
    import asyncio
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": parts.path,
        "raw_path": parts.path.encode(),
        "query_string": parts.query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver")]
        + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    started, disconnected = asyncio.Event(), asyncio.Event()
    request_sent = False
    status = 0
    response_headers: dict[str, str] = {}
    body = bytearray()

    async def receive() -> dict[str, Any]:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers.update(
                (k.decode().lower(), v.decode()) for k, v in message.get("headers", [])
            )
            started.set()
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    task = asyncio.create_task(app(scope, receive, send))
    try:
        await asyncio.wait_for(started.wait(), wait)
        if status < 400:
            await asyncio.sleep(0.01)  # let the first events out
    finally:
        disconnected.set()
        await asyncio.wait_for(task, wait)
    return status, response_headers, bytes(body)
