"""Short Redis commands of the hot path, on one pipelined connection.

redis-py's asyncio client takes a pooled connection for every command, wraps it in its retry
logic and parses through a stream reader: about 125 us of CPU per command on a 2-core test
machine, more than the round trip itself. A chat turn makes one to three such commands (its
rate limits, the live event of the conversation, the outbox enqueue), all short and
answered at once, so they share one connection here: each call writes its command straight
away, Redis answers in order, and replies are matched to callers first in, first out (about
55 us per command; under load several replies arrive in one read).

Only for commands Redis answers at once: never a blocking command or a subscription, which
would hold up every call behind it. Errors are redis-py's exception classes, so callers
handle both clients alike. TLS (``rediss://``) is not spoken here: ``RedisPipe.from_url``
returns None for it and the caller uses redis-py (``RedisPyCommands``).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from collections.abc import Sequence
from typing import Any, Protocol, cast

import hiredis
from redis import exceptions
from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection, parse_url

Arg = bytes | str | int | float

DEFAULT_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
# After a failed connect, calls fail at once for this long (doubling with each further
# failure, up to the maximum) instead of each waiting for a connect of its own: a Redis that
# drops packets would cost every chat turn the connect timeout.
RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0


class Script:
    """A Lua script run by its SHA1, sent whole once when Redis does not know it yet."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.sha = hashlib.sha1(body.encode(), usedforsecurity=False).hexdigest()


class Commands(Protocol):
    """What the rate limiter, the live events and the job queue send to Redis."""

    async def execute(self, *args: Arg) -> Any: ...

    async def run(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any: ...

    async def aclose(self) -> None: ...


async def run_script(
    commands: Commands, script: Script, keys: Sequence[Arg], args: Sequence[Arg]
) -> Any:
    """EVALSHA, and EVAL when Redis does not know the script (restarted or flushed)."""
    try:
        return await commands.execute("EVALSHA", script.sha, len(keys), *keys, *args)
    except exceptions.NoScriptError:
        return await commands.execute("EVAL", script.body, len(keys), *keys, *args)


def pack(args: Sequence[Arg]) -> bytes:
    """A command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int | float) and not isinstance(arg, bool):
            data = repr(arg).encode()
        else:
            raise exceptions.DataError(
                f"invalid Redis argument of type {type(arg).__name__}: "
                "convert to bytes, str, int or float first"
            )
        out += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(out)


def _error(reply: Exception) -> exceptions.RedisError:
    message = str(reply)
    if message.startswith("NOSCRIPT"):
        return exceptions.NoScriptError(message)
    if message.startswith(("NOAUTH", "WRONGPASS")) or "invalid password" in message:
        return exceptions.AuthenticationError(message)
    return exceptions.ResponseError(message)


class _Connection(asyncio.Protocol):
    """Replies matched to waiters in order. A watchdog, not a timer per call, drops the
    connection once its oldest unanswered command is ``timeout`` seconds old."""

    def __init__(self, timeout: float, where: str) -> None:
        self._reader = hiredis.Reader()
        # Each unanswered command's waiter and when it was written, oldest first.
        self._waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._where = where
        self._watch: asyncio.TimerHandle | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, only alike.
        self._transport = cast(asyncio.Transport, transport)
        self._watch = self._loop.call_later(self._timeout / 4, self._check)

    def _check(self) -> None:
        if self._waiting and self._loop.time() - self._waiting[0][1] > self._timeout:
            self.abort(
                exceptions.TimeoutError(
                    f"Redis at {self._where} did not answer within {self._timeout} s"
                )
            )
        elif not self.closed:
            self._watch = self._loop.call_later(self._timeout / 4, self._check)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.abort(exceptions.ConnectionError(f"Redis protocol error: {exc}"))
                return
            if reply is False:
                return
            if not self._waiting:  # e.g. "-ERR max number of clients reached" on connecting
                self.abort(exceptions.ConnectionError(f"Redis said, unasked: {reply}"))
                return
            waiter, _ = self._waiting.popleft()
            if not waiter.done():  # a caller that gave up still had its place in line
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exceptions.ConnectionError(f"Redis connection lost: {exc or 'closed'}"))

    def _fail(self, error: Exception) -> None:
        self.closed = True
        if self._watch is not None:
            self._watch.cancel()
        while self._waiting:
            waiter, _ = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    def send(self, command: bytes) -> asyncio.Future[Any]:
        if self.closed or self._transport is None:
            raise exceptions.ConnectionError("Redis connection lost: closed")
        waiter = self._loop.create_future()
        self._waiting.append((waiter, self._loop.time()))
        self._transport.write(command)
        return waiter

    def abort(self, error: Exception) -> None:
        self._fail(error)
        if self._transport is not None:
            self._transport.abort()


class RedisPipe:
    """One connection, opened on first use and again after it is lost. A call waits for its
    reply between ``timeout`` and 1.25 times it at most (the watchdog looks every quarter);
    then the connection is dropped with every call it holds: a Redis that stopped answering
    must not collect callers."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self._host, self._port, self._path = host, port, path
        self._db, self._username, self._password = db, username, password
        self._timeout, self._connect_timeout = timeout, connect_timeout
        self._connection: _Connection | None = None
        self._connecting = asyncio.Lock()
        self._retry_at = 0.0
        self._failures = 0

    @classmethod
    def from_url(cls, url: str, timeout: float = DEFAULT_TIMEOUT) -> RedisPipe | None:
        """For ``redis://`` and ``unix://`` URLs, with their user, password and db; None for
        TLS."""
        options: dict[str, Any] = dict(parse_url(url))
        if options.get("connection_class") is SSLConnection:
            return None
        return cls(
            host=options.get("host") or "127.0.0.1",
            port=int(options.get("port") or 6379),
            path=options.get("path"),
            db=int(options.get("db") or 0),
            username=options.get("username"),
            password=options.get("password"),
            timeout=float(options.get("socket_timeout") or timeout),
            connect_timeout=float(options.get("socket_connect_timeout") or CONNECT_TIMEOUT),
        )

    def _where(self) -> str:
        return self._path or f"{self._host}:{self._port}"

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._failures and self._connecting.locked():
            # Redis has been failing and another call is trying it now: do not queue behind
            # that attempt (up to the connect timeout each).
            raise exceptions.ConnectionError(f"Redis at {self._where()} unreachable; retrying")
        async with self._connecting:
            current = self._connection
            if current is not None and not current.closed:
                return current
            if loop.time() < self._retry_at:
                raise exceptions.ConnectionError(
                    f"Redis at {self._where()} unreachable; next attempt in "
                    f"{self._retry_at - loop.time():.1f} s"
                )
            try:
                connection = await self._connect(loop)
            except exceptions.RedisError:  # not a caller's cancellation: Redis failed
                self._failures += 1
                self._retry_at = loop.time() + min(
                    RETRY_SECONDS * 2 ** (self._failures - 1), MAX_RETRY_SECONDS
                )
                raise
            self._failures = 0
            self._connection = connection
            return connection

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        """A connection that has said who it is and chosen its database; never left open
        when that fails (an error reply, a timeout or a cancellation)."""

        def made() -> _Connection:
            return _Connection(self._timeout, self._where())

        connection: _Connection | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._path:
                    _, connection = await loop.create_unix_connection(made, self._path)
                else:
                    _, connection = await loop.create_connection(made, self._host, self._port)
                greeting = []
                if self._password is not None:
                    who = (self._username,) if self._username else ()
                    greeting.append(connection.send(pack(("AUTH", *who, self._password))))
                if self._db:
                    greeting.append(connection.send(pack(("SELECT", self._db))))
                replies = [await reply for reply in greeting]
            failed = next((r for r in replies if isinstance(r, hiredis.ReplyError)), None)
            if failed is not None:
                raise _error(failed)
        except BaseException as exc:
            if connection is not None:
                connection.abort(exceptions.ConnectionError("Redis connection not set up"))
            if isinstance(exc, OSError | TimeoutError):
                raise exceptions.ConnectionError(
                    f"Error connecting to Redis at {self._where()}: {str(exc) or 'timed out'}"
                ) from exc
            raise
        return connection

    async def execute(self, *args: Arg) -> Any:
        command = pack(args)
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._open()
        reply = await connection.send(command)
        if isinstance(reply, hiredis.ReplyError):
            raise _error(reply)
        return reply

    async def run(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        return await run_script(self, script, keys, args)

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.abort(exceptions.ConnectionError("Redis connection closed"))


class RedisPyCommands:
    """The same calls through a redis-py client: TLS connections, and the worker's client."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def execute(self, *args: Arg) -> Any:
        return await self._redis.execute_command(*args)  # type: ignore[no-untyped-call]

    async def run(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        return await run_script(self, script, keys, args)

    async def aclose(self) -> None:
        """The client is its owner's to close."""


def commands_for(url: str, redis: Redis) -> Commands:
    """The pipelined connection where it can serve ``url``, else ``redis`` itself."""
    pipe = RedisPipe.from_url(url)
    return pipe if pipe is not None else RedisPyCommands(redis)
