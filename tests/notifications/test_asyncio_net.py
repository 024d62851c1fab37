"""The notification client's network layer (asyncio streams under httpcore) against small
servers on 127.0.0.1 that misbehave on purpose: TLS, timeouts, a server closing an idle
keep-alive connection."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpcore
import httpx
import pytest

from nectar.notifications.channels.asyncio_net import AsyncioBackend
from nectar.notifications.channels.http import GatedTransport, request
from tests.notifications.platforms import LOCAL, failure

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def server(
    handler: Handler, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP (or TLS) server on 127.0.0.1; yields its port and a count of connections."""
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    listening = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield port, connections
    finally:
        listening.close()


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every request on the connection with 200 "ok" (keep-alive)."""
    while True:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(  # noqa: S603 - fixed arguments
        [  # noqa: S607 - openssl from the PATH, as for the email tests' certificate
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_a_tls_server_is_reached_when_its_certificate_is_trusted_and_refused_otherwise(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    async with server(answer, tls) as (port, _):
        trusting = ssl.create_default_context(cafile=str(cert))
        async with httpcore.AsyncConnectionPool(
            ssl_context=trusting, network_backend=AsyncioBackend()
        ) as pool:
            response = await pool.request("GET", f"https://localhost:{port}/")
            assert (response.status, response.content) == (200, b"ok")
        # The notification client trusts the public CAs only: a self-signed certificate is
        # a failed delivery (tried again later), never a request sent in the clear.
        async with httpx.AsyncClient(transport=GatedTransport(2), timeout=5) as client:
            error = await failure(
                request(client, LOCAL, "GET", f"https://127.0.0.1:{port}/", "platform")
            )
    assert error.retriable and "ConnectError" in str(error)


async def test_a_server_that_never_answers_is_a_retriable_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(5)

    async with (
        server(silent) as (port, _),
        httpx.AsyncClient(transport=GatedTransport(2), timeout=0.3) as client,
    ):
        error = await failure(request(client, LOCAL, "GET", f"http://127.0.0.1:{port}/", "x"))
    assert error.retriable and "timed out" in str(error)


async def test_an_idle_connection_the_server_closed_is_replaced_not_reused() -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)  # keep-alive by the headers, then closed anyway
        await writer.drain()

    async with (
        server(once) as (port, connections),
        httpx.AsyncClient(transport=GatedTransport(2), timeout=5) as client,
    ):
        for _ in range(3):
            response = await client.get(f"http://127.0.0.1:{port}/")
            assert response.status_code == 200
            await asyncio.sleep(0.1)  # the server's close reaches the idle connection
    assert len(connections) == 3


async def test_keep_alive_connections_are_reused() -> None:
    async with (
        server(answer) as (port, connections),
        httpx.AsyncClient(transport=GatedTransport(2), timeout=5) as client,
    ):
        for _ in range(5):
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
    assert len(connections) == 1


async def test_a_request_goes_out_in_one_piece_when_its_answer_is_awaited() -> None:
    pieces: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pieces.append(await reader.read(65536))
        writer.write(OK)
        await writer.drain()

    head = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n\r\n"
    async with server(record) as (port, _):
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        await stream.write(head, timeout=5)  # httpcore writes the headers, then the body
        await stream.write(b"body", timeout=5)
        await asyncio.sleep(0.05)
        assert pieces == []
        assert (await stream.read(65536, timeout=5)).startswith(b"HTTP/1.1 200 OK")
        await stream.aclose()
    assert pieces == [head + b"body"]
