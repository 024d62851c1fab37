"""The gate in front of the shared HTTP client: at most so many requests on the wire, the
others wait their turn (within the pool timeout), and a slot always comes back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from nectar.notifications.channels.http import GatedTransport, basic_auth, request
from nectar.notifications.registry import HTTP_CONNECTIONS, build_channels
from tests.notifications.platforms import LOCAL, dead_port, failure, receiver


def gated(size: int, timeout: float = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=timeout, transport=GatedTransport(size))


async def test_requests_beyond_the_gate_wait_their_turn() -> None:
    async with receiver() as platform, gated(2) as client:
        platform.then(200, {}, delay=0.3, times=6)
        started = time.perf_counter()
        responses = await asyncio.gather(
            *(client.post(f"{platform.url}/hook", json={"n": n}) for n in range(6))
        )
        elapsed = time.perf_counter() - started
    assert [r.status_code for r in responses] == [200] * 6
    assert elapsed >= 0.85  # three rounds of two, not one round of six


async def test_a_slot_comes_back_after_every_kind_of_ending() -> None:
    async with receiver() as platform, gated(1) as client:
        # Nothing listening: the failed connect gives its slot back.
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{dead_port()}/")
        # An error status, a body read to the end, a streamed body left unread.
        platform.then(503, "busy")
        assert (await client.get(f"{platform.url}/a")).status_code == 503
        assert (await client.get(f"{platform.url}/b")).status_code == 200
        async with client.stream("GET", f"{platform.url}/c") as streamed:
            assert streamed.status_code == 200
        async with asyncio.timeout(2):  # a lost slot would hang here
            assert (await client.get(f"{platform.url}/d")).status_code == 200


async def test_waiting_longer_than_the_pool_timeout_is_a_retriable_timeout() -> None:
    timeout = httpx.Timeout(5.0, pool=0.2)
    async with (
        receiver() as platform,
        httpx.AsyncClient(timeout=timeout, transport=GatedTransport(1)) as client,
    ):
        platform.then(200, {}, delay=1.0)
        slow = asyncio.create_task(client.get(f"{platform.url}/slow"))
        await platform.wait_for(1)
        error = await failure(request(client, LOCAL, "GET", f"{platform.url}/next", "platform"))
        assert error.retriable and "timed out" in str(error)
        assert (await slow).status_code == 200
    assert len(platform.requests) == 1  # the one that timed out never left


async def test_a_cookie_one_answer_sets_is_never_sent_back() -> None:
    async with receiver() as platform, gated(2) as client:
        platform.then(200, {}, headers={"Set-Cookie": "session=abc; Path=/"})
        for _ in range(2):
            await request(client, LOCAL, "POST", f"{platform.url}/hook", "platform", json={})
    assert [r.headers.get("cookie") for r in platform.requests] == [None, None]


async def test_credentials_and_query_go_with_the_request() -> None:
    async with receiver() as platform, gated(2) as client:
        await request(
            client,
            LOCAL,
            "GET",
            f"{platform.url}/api",
            "platform",
            params={"b": "2 3"},
            headers=basic_auth("ada@example.com/token", "s3cret"),
        )
    (sent,) = platform.requests
    assert sent.headers["authorization"] == "Basic YWRhQGV4YW1wbGUuY29tL3Rva2VuOnMzY3JldA=="
    assert sent.headers["user-agent"].startswith("python-httpx/")  # the client's own headers
    assert sent.query == "b=2+3"


async def test_a_closed_client_sends_nothing() -> None:
    async with receiver() as platform:
        client = gated(1)
        await client.aclose()
        with pytest.raises(RuntimeError):
            await request(client, LOCAL, "GET", f"{platform.url}/", "platform")
    assert platform.requests == []


def test_the_shared_client_is_gated(tmp_path: Path) -> None:
    from nectar.config import load_config
    from nectar.events import MemoryBus
    from tests.notifications.test_outbox import write_config

    config = load_config(write_config(tmp_path, mode="enterprise_external"))
    channels = build_channels(config, None, MemoryBus())  # type: ignore[arg-type]
    transport = channels._client._transport  # type: ignore[union-attr]
    assert isinstance(transport, GatedTransport)
    assert transport.pool.size == HTTP_CONNECTIONS
    asyncio.run(channels.aclose())
