# ruff: noqa: ASYNC109 - httpcore's interface passes each call's timeout as an argument
"""An httpcore network backend on plain asyncio streams, for the notification client.

httpcore reaches asyncio through anyio, which on every read and write enters a cancel scope
and looks up the running async library, and which answers the pool's "has the server closed
this idle connection?" (asked of every idle connection on every request start and end) with
a dictionary of socket attributes and a poll() system call. A notification worker makes
hundreds of requests a second: those layers cost it about a tenth of its CPU. asyncio's own
streams do the same work directly, and the question is answered by the stream's state (an
asyncio transport reads eagerly, so a server's close has already been seen).

Errors and timeouts map to httpcore's exceptions exactly as its anyio backend maps them, so
httpx reports them the same way (ConnectError, ReadTimeout...).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Coroutine, Iterable
from typing import Any

import httpcore


class AsyncioStream(httpcore.AsyncNetworkStream):
    """What httpcore writes is held until it next reads (or starts TLS), then sent in one
    piece: httpcore writes a request's headers and its body separately, and on loopback
    each send is most of a delivery's network cost (the kernel delivers the segment there
    and then). A client always reads the answer to what it wrote, so nothing waits longer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._unsent: list[bytes] = []
        self._write_timeout: float | None = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._unsent:
            # As httpcore does with a failed write: the server may have answered (an error
            # status, then a close) before taking the whole request; the read tells.
            with contextlib.suppress(httpcore.WriteError):
                await self._flush()
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError:
            raise httpcore.ReadTimeout("timed out reading") from None
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            self._unsent.append(buffer)
            self._write_timeout = timeout

    async def _flush(self) -> None:
        unsent = self._unsent
        data = unsent[0] if len(unsent) == 1 else b"".join(unsent)
        unsent.clear()
        try:
            self._writer.write(data)
            if self._writer.transport.get_write_buffer_size():  # the kernel took only part
                async with asyncio.timeout(self._write_timeout):
                    await self._writer.drain()
        except TimeoutError:
            raise httpcore.WriteTimeout("timed out writing") from None
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):  # already broken: closed all the same
            await self._writer.wait_closed()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self._unsent:  # a proxy's CONNECT is answered first: never the case in practice
            await self._flush()
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError:
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from None
        except OSError as exc:  # ssl.SSLError (a bad certificate...) is one
            raise httpcore.ConnectError(str(exc)) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        if info == "is_readable":
            # Idle, a connection has nothing to read unless the server closed it (or broke
            # the protocol); either way httpcore will not reuse it.
            return (
                self._reader.at_eof()
                or self._writer.is_closing()
                or self._reader.exception() is not None
            )
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        opening = asyncio.open_connection(
            host, port, local_addr=(local_address, 0) if local_address else None
        )
        return await _opened(opening, host, timeout, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await _opened(asyncio.open_unix_connection(path), path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _apply(writer: asyncio.StreamWriter, socket_options: Iterable[Any] | None) -> None:
    sock = writer.get_extra_info("socket")
    for option in socket_options or ():
        sock.setsockopt(*option)


async def _opened(
    opening: Coroutine[Any, Any, tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    where: str,
    timeout: float | None,
    socket_options: Iterable[Any] | None,
) -> AsyncioStream:
    """A connection being opened, with httpcore's errors for a timeout or a refusal."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await opening
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"timed out connecting to {where}") from None
    except OSError as exc:
        raise httpcore.ConnectError(str(exc)) from exc
    _apply(writer, socket_options)
    return AsyncioStream(reader, writer)
