"""The shared client's own connections (under the gate): reused while they last, never more
open than the gate allows, and one that cannot take another request is never reused."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from nectar.notifications.channels import http
from nectar.notifications.channels.http import GatedTransport, request
from tests.notifications.platforms import LOCAL, failure
from tests.notifications.test_asyncio_net import OK, answer, server


def gated(size: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=GatedTransport(size), timeout=5)


async def test_a_new_origin_beyond_the_limit_closes_the_longest_idle_connection() -> None:
    async with (
        server(answer) as (a, to_a),
        server(answer) as (b, to_b),
        server(answer) as (c, to_c),
        gated(2) as client,
    ):
        for port in (a, b, c, a, c):
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
    # a's connection made room for c's, then b's for a's second; c's was kept.
    assert (len(to_a), len(to_b), len(to_c)) == (2, 1, 1)


async def test_a_connection_idle_longer_than_the_keep_alive_expiry_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http, "KEEPALIVE_SECONDS", 0.1)
    async with server(answer) as (port, connections), gated(2) as client:
        for pause in (0.0, 0.0, 0.3):
            await asyncio.sleep(pause)
            assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200
    assert len(connections) == 2


async def test_a_connection_the_server_will_close_is_not_reused() -> None:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:  # says it closes, and then keeps the socket open anyway
            await reader.readuntil(b"\r\n\r\n")
            writer.write(OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            await writer.drain()

    async with server(closing) as (port, connections), gated(2) as client:
        for _ in range(3):
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
    assert len(connections) == 3


async def test_a_response_left_unread_closes_its_connection() -> None:
    async with server(answer) as (port, connections), gated(1) as client:
        async with client.stream("GET", f"http://127.0.0.1:{port}/") as unread:
            assert unread.status_code == 200
        assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
    assert len(connections) == 2


async def test_a_cancelled_request_gives_its_slot_back() -> None:
    arrived = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        arrived.set()
        await asyncio.sleep(5)

    async with server(silent) as (stuck, _), server(answer) as (port, _), gated(1) as client:
        waiting = asyncio.create_task(client.get(f"http://127.0.0.1:{stuck}/"))
        await arrived.wait()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        async with asyncio.timeout(2):  # a lost slot would hang here
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"


async def test_a_body_cut_short_is_a_retriable_failure_and_frees_the_slot() -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        await writer.drain()

    async with server(short) as (cut, _), server(answer) as (port, _), gated(1) as client:
        error = await failure(request(client, LOCAL, "GET", f"http://127.0.0.1:{cut}/", "x"))
        assert error.retriable and "RemoteProtocolError" in str(error)
        async with asyncio.timeout(2):
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
