"""Live message streams (Server-Sent Events) against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from nectar.app import create_app
from tests.conftest import make_settings
from tests.helpers import create_bot


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """The app on a real socket (its lifespan is already running in the fixture)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            lifespan="off",
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def collect(
    client: httpx.AsyncClient, url: str, count: int, **kwargs: Any
) -> list[dict[str, Any]]:
    """Read ``count`` message events from an SSE endpoint (bounded in time)."""
    events: list[dict[str, Any]] = []

    async def read() -> None:
        async with client.stream("GET", url, **kwargs) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:].strip()))
                    if len(events) >= count:
                        return

    await asyncio.wait_for(read(), 10)
    return events


async def chat(client: httpx.AsyncClient, bot: dict, text: str, cid: str | None = None) -> dict:
    body: dict[str, Any] = {"message": text}
    if cid:
        body["conversation_id"] = cid
    r = await client.post(
        f"/api/nectar-bots/{bot['id']}/chat", json=body, headers={"X-API-Key": bot["api_key"]}
    )
    assert r.status_code == 200, r.text
    result: dict = r.json()
    return result


async def test_user_sees_backlog_then_live_agent_reply(
    app: FastAPI, admin: Any, accounts: Any
) -> None:
    agent = await accounts("agent")
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        bot = await create_bot(client, admin, handoff_enabled=False)
        first = await chat(client, bot, "hello there")
        cid = first["conversation_id"]
        url = f"/api/nectar-bots/{bot['id']}/conversations/{cid}/stream"
        reader = asyncio.create_task(collect(client, url, 4, headers={"X-API-Key": bot["api_key"]}))
        await asyncio.sleep(0.3)
        r = await client.post(
            f"/api/nectar-bots/conversations/{cid}/handoff", json={}, headers=admin.headers
        )
        hid = r.json()["handoff"]["id"]
        r = await client.post(
            f"/api/nectar-bots/handoffs/{hid}/messages",
            json={"content": "Hi, a human here."},
            headers=agent.headers,
        )
        assert r.status_code == 200
        await chat(client, bot, "great, thanks", cid)
        events = await reader
    assert [(e["role"], e["seq"]) for e in events] == [
        ("user", 1),
        ("bot", 2),
        ("agent", 3),
        ("user", 4),
    ]
    assert events[2]["content"] == "Hi, a human here."


async def test_reconnect_resumes_after_last_event_id(app: FastAPI, admin: Any) -> None:
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        bot = await create_bot(client, admin, handoff_enabled=False)
        first = await chat(client, bot, "one")
        cid = first["conversation_id"]
        await chat(client, bot, "two", cid)
        url = f"/api/nectar-bots/{bot['id']}/conversations/{cid}/stream"
        events = await collect(
            client,
            url,
            2,
            headers={"X-API-Key": bot["api_key"], "Last-Event-ID": first["message_id"]},
        )
    assert [e["content"] for e in events][:1] == ["two"]
    assert [e["seq"] for e in events] == [3, 4]


async def test_agent_stream_takes_the_token_as_a_query_parameter(app: FastAPI, admin: Any) -> None:
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        bot = await create_bot(client, admin, handoff_enabled=False)
        cid = (await chat(client, bot, "hi"))["conversation_id"]
        r = await client.post(
            f"/api/nectar-bots/conversations/{cid}/handoff", json={}, headers=admin.headers
        )
        hid = r.json()["handoff"]["id"]
        url = f"/api/nectar-bots/handoffs/{hid}/stream?access_token={admin.token}"
        reader = asyncio.create_task(collect(client, url, 3))
        await asyncio.sleep(0.3)
        await chat(client, bot, "is anyone there?", cid)
        events = await reader
        denied = await client.get(f"/api/nectar-bots/handoffs/{hid}/stream?access_token=nope")
    assert events[-1]["content"] == "is anyone there?"
    assert denied.status_code == 401


async def test_streams_refuse_wrong_keys_and_other_bots(app: FastAPI, admin: Any) -> None:
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        bot = await create_bot(client, admin, handoff_enabled=False)
        other = await create_bot(client, admin, name="Other")
        cid = (await chat(client, bot, "hi"))["conversation_id"]
        r = await client.get(f"/api/nectar-bots/{bot['id']}/conversations/{cid}/stream")
        assert r.status_code == 401
        r = await client.get(
            f"/api/nectar-bots/{other['id']}/conversations/{cid}/stream",
            headers={"X-API-Key": other["api_key"]},
        )
        assert r.status_code == 404


async def test_live_events_cross_replicas_through_redis(
    database_url: str, admin: Any, redis_url: str, redis_prefix: str
) -> None:
    """A user following the stream on one API process sees a reply stored by another."""
    settings = make_settings(database_url, redis_url=redis_url, redis_prefix=redis_prefix)
    one, two = create_app(settings), create_app(settings)
    async with (
        one.router.lifespan_context(one),
        two.router.lifespan_context(two),
        serving(one) as a_url,
        serving(two) as b_url,
        httpx.AsyncClient(base_url=a_url, timeout=10) as a,
        httpx.AsyncClient(base_url=b_url, timeout=10) as b,
    ):
        bot = await create_bot(a, admin, handoff_enabled=False)
        cid = (await chat(a, bot, "first"))["conversation_id"]
        url = f"/api/nectar-bots/{bot['id']}/conversations/{cid}/stream"
        reader = asyncio.create_task(collect(a, url, 4, headers={"X-API-Key": bot["api_key"]}))
        await asyncio.sleep(0.3)
        await chat(b, bot, "second", cid)
        events = await reader
    assert [e["content"] for e in events][2] == "second"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {}
