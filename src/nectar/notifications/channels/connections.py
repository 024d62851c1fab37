"""The shared notification client's connections: at most ``size`` requests on the wire at
once (the others wait their turn, for as long as the pool timeout allows), each on an
HTTP/1.1 keep-alive connection that is reused while it lasts.

This stands where httpcore's AsyncConnectionPool would (under httpx's transport, which maps
its errors). That pool walks all its connections and queued requests on every request start
and end, and its locks and events go through anyio: in a busy worker that was about 12% of
the CPU of a delivery (arq's share aside). A worker only ever needs the plain case, so a request
waits on a semaphore, takes the most recently used idle connection to its origin (or opens
one) and gives it back when its response is closed. Never more than ``size`` connections
are open: to open one more, the longest idle one is closed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterable, AsyncIterator

import httpcore


class GatedPool:
    """What httpx's transport calls its pool: ``handle_async_request`` and ``aclose``."""

    def __init__(
        self,
        size: int,
        *,
        ssl_context: ssl.SSLContext,
        keepalive_expiry: float,
        network_backend: httpcore.AsyncNetworkBackend,
    ) -> None:
        self.size = size
        self._slots = asyncio.Semaphore(size)
        self._idle: list[httpcore.AsyncHTTP11Connection] = []  # the longest idle first
        self._busy: set[httpcore.AsyncHTTP11Connection] = set()
        ssl_context.set_alpn_protocols(["http/1.1"])
        self._ssl_context = ssl_context
        self._keepalive_expiry = keepalive_expiry
        self._backend = network_backend

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        scheme = request.url.scheme
        if scheme not in (b"http", b"https"):
            raise httpcore.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{scheme.decode()}://'."
            )
        await self._acquire(request)
        try:
            connection = await self._checkout(request)
        except BaseException:
            self._slots.release()
            raise
        try:
            response = await connection.handle_async_request(request)
        except BaseException:
            await self._checkin(connection)  # closed by httpcore on the way out
            raise
        assert isinstance(response.stream, AsyncIterable)
        response.stream = _Body(response.stream, self, connection)
        return response

    async def aclose(self) -> None:
        connections = [*self._idle, *self._busy]
        self._idle.clear()
        self._busy.clear()
        for connection in connections:
            await connection.aclose()

    async def _acquire(self, request: httpcore.Request) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # a free slot: taken at once, no timer needed
            return
        wait = request.extensions.get("timeout", {}).get("pool")
        try:
            async with asyncio.timeout(wait):
                await self._slots.acquire()
        except TimeoutError:
            raise httpcore.PoolTimeout("no connection became free") from None

    async def _checkout(self, request: httpcore.Request) -> httpcore.AsyncHTTP11Connection:
        """An idle connection to the request's origin, or a new one."""
        origin = request.url.origin
        idle = self._idle
        if idle and idle[0].has_expired():  # one check a request keeps the list tidy
            await idle.pop(0).aclose()
        for i in range(len(idle) - 1, -1, -1):
            connection = idle[i]
            if connection.can_handle_request(origin):
                del idle[i]
                if connection.has_expired():  # the server closed it, or it idled too long
                    await connection.aclose()
                    continue
                self._busy.add(connection)
                return connection
        if idle and len(idle) + len(self._busy) >= self.size:
            await idle.pop(0).aclose()
        connection = await self._connect(request)
        self._busy.add(connection)
        return connection

    async def _checkin(self, connection: httpcore.AsyncHTTP11Connection) -> None:
        """Back to the idle ones if it can take another request, else closed; the request's
        slot is free either way."""
        try:
            self._busy.discard(connection)
            if connection.is_idle():
                self._idle.append(connection)
            else:
                await connection.aclose()  # closed already, or left in mid-response
        finally:
            self._slots.release()

    async def _connect(self, request: httpcore.Request) -> httpcore.AsyncHTTP11Connection:
        origin = request.url.origin
        host = origin.host.decode("ascii")
        timeout = request.extensions.get("timeout", {}).get("connect")
        stream = await self._backend.connect_tcp(host, origin.port, timeout=timeout)
        if origin.scheme == b"https":
            try:
                stream = await stream.start_tls(
                    self._ssl_context,
                    server_hostname=request.extensions.get("sni_hostname") or host,
                    timeout=timeout,
                )
            except BaseException:
                await stream.aclose()
                raise
        connection = httpcore.AsyncHTTP11Connection(
            origin, stream, keepalive_expiry=self._keepalive_expiry
        )
        # httpcore takes this lock twice a request, through anyio, whose every acquire also
        # yields to the event loop. A connection here serves one request at a time: asyncio's
        # own lock (never contended, never yielding) does the same job.
        connection._state_lock = asyncio.Lock()  # type: ignore[assignment]
        return connection


class _Body:
    """A response's body; closing it (read to the end or not) gives its connection back."""

    def __init__(
        self,
        stream: AsyncIterable[bytes],
        pool: GatedPool,
        connection: httpcore.AsyncHTTP11Connection,
    ) -> None:
        self._stream = stream
        self._pool: GatedPool | None = pool
        self._connection = connection

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            closing = getattr(self._stream, "aclose", None)
            if closing is not None:
                await closing()
        finally:
            await pool._checkin(self._connection)
