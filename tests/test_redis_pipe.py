"""The pipelined Redis connection of the hot path, against a real Redis: every caller gets its
own reply whatever the interleaving, errors are redis-py's, and a lost, stuck or refused
connection fails the calls it holds and is replaced."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvloop
from redis import exceptions
from redis.asyncio import Redis

from nectar.redis_pipe import (
    RedisPipe,
    RedisPyCommands,
    Script,
    commands_for,
    pack,
)
from tests.receivers import free_port

pytestmark = pytest.mark.redis


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def pipe(redis_url: str) -> AsyncIterator[RedisPipe]:
    made = RedisPipe.from_url(redis_url)
    assert made is not None
    try:
        yield made
    finally:
        await made.aclose()


async def test_concurrent_callers_each_get_their_own_reply(pipe: RedisPipe) -> None:
    # Replies of very different sizes, so some arrive split across reads and others many
    # to a read.
    payloads = [f"{i}:" + "x" * (i * 997 % 70_000) for i in range(300)]
    replies = await asyncio.gather(*(pipe.execute("ECHO", p) for p in payloads))
    assert replies == [p.encode() for p in payloads]


async def test_values_and_types_round_trip(pipe: RedisPipe, redis_prefix: str) -> None:
    key = f"{redis_prefix}:n"
    try:
        assert await pipe.execute("INCRBY", key, 41) == 41
        assert await pipe.execute("INCR", key) == 42
        assert await pipe.execute("GET", key) == b"42"
        assert await pipe.execute("GET", f"{redis_prefix}:missing") is None
        assert await pipe.execute("SET", key, 1.5) == b"OK"
        assert await pipe.execute("GET", key) == b"1.5"
    finally:
        await pipe.execute("DEL", key)


async def test_an_error_reply_is_raised_and_the_connection_goes_on(
    pipe: RedisPipe, redis_prefix: str
) -> None:
    key = f"{redis_prefix}:text"
    try:
        await pipe.execute("SET", key, "not a number")
        with pytest.raises(exceptions.ResponseError, match="not an integer"):
            await pipe.execute("INCR", key)
        assert await pipe.execute("PING") == b"PONG"
    finally:
        await pipe.execute("DEL", key)


def test_arguments_that_redis_cannot_take_are_refused() -> None:
    assert pack(["SET", b"k", 7]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n7\r\n"
    for bad in (None, True, ["a"]):
        with pytest.raises(exceptions.DataError):
            pack(["SET", "k", bad])  # type: ignore[list-item]


async def test_a_script_redis_has_forgotten_is_sent_whole(
    pipe: RedisPipe, redis: Redis, redis_prefix: str
) -> None:
    script = Script(f"return {{KEYS[1], ARGV[1], '{uuid.uuid4().hex}'}}")
    key = f"{redis_prefix}:k"
    assert (await redis.script_exists(script.sha)) == [False]
    reply = await pipe.run(script, [key], ["v"])
    assert reply[:2] == [key.encode(), b"v"]
    assert (await redis.script_exists(script.sha)) == [True]  # EVAL cached it
    assert await pipe.run(script, [key], ["w"]) == [key.encode(), b"w", reply[2]]


async def test_a_killed_connection_fails_what_it_held_and_is_replaced(
    pipe: RedisPipe, redis: Redis, redis_prefix: str
) -> None:
    client_id = await pipe.execute("CLIENT", "ID")
    # A reply that will never come on this connection (blocking commands are not for the
    # pipe; here it stands for any reply in flight when the connection dies).
    held = asyncio.create_task(pipe.execute("BLPOP", f"{redis_prefix}:never", 10))
    await asyncio.sleep(0.1)
    assert await redis.client_kill_filter(_id=client_id) == 1
    with pytest.raises(exceptions.ConnectionError):
        await asyncio.wait_for(held, 2)
    assert await pipe.execute("PING") == b"PONG"
    assert await pipe.execute("CLIENT", "ID") != client_id


async def test_a_reply_that_does_not_come_in_time_raises_and_the_next_call_reconnects(
    redis_url: str, redis_prefix: str
) -> None:
    pipe = RedisPipe.from_url(redis_url, timeout=0.3)
    assert pipe is not None
    try:
        first = await pipe.execute("CLIENT", "ID")
        started = time.monotonic()
        with pytest.raises(exceptions.TimeoutError, match=r"did not answer within 0\.3 s"):
            await pipe.execute("BLPOP", f"{redis_prefix}:never", 5)
        assert time.monotonic() - started < 2
        assert await pipe.execute("PING") == b"PONG"
        assert await pipe.execute("CLIENT", "ID") != first
    finally:
        await pipe.aclose()


async def test_an_unreachable_redis_fails_fast_and_is_retried_after_a_pause() -> None:
    port = free_port()
    pipe = RedisPipe(port=port)
    with pytest.raises(exceptions.ConnectionError, match=f"127.0.0.1:{port}"):
        await pipe.execute("PING")
    # Until the pause is over, calls fail without another connect.
    with pytest.raises(exceptions.ConnectionError, match="next attempt in"):
        await pipe.execute("PING")
    await pipe.aclose()


async def test_the_database_of_the_url_is_selected(redis_url: str, redis_prefix: str) -> None:
    base = redis_url.rsplit("/", 1)[0]
    pipe = RedisPipe.from_url(f"{base}/5")
    other = Redis.from_url(f"{base}/5")
    key = f"{redis_prefix}:db"
    assert pipe is not None
    try:
        await pipe.execute("SET", key, "here")
        assert await other.get(key) == b"here"
    finally:
        await other.delete(key)
        await other.aclose()
        await pipe.aclose()


async def test_user_and_password_of_the_url_are_used(redis: Redis, redis_url: str) -> None:
    user, password = f"nectar-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await redis.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"]
    )
    host = redis_url.split("://", 1)[1]
    good = RedisPipe.from_url(f"redis://{user}:{password}@{host}")
    bad = RedisPipe.from_url(f"redis://{user}:wrong@{host}")
    assert good is not None and bad is not None
    try:
        assert await good.execute("ACL", "WHOAMI") == user.encode()
        with pytest.raises(exceptions.AuthenticationError) as refused:
            await bad.execute("PING")
        assert "wrong" not in str(refused.value)
        # Refused credentials are not tried again on every call.
        with pytest.raises(exceptions.ConnectionError, match="next attempt in"):
            await bad.execute("PING")
    finally:
        await good.aclose()
        await bad.aclose()
        await redis.acl_deluser(user)


REDIS_SERVER = shutil.which("redis-server")


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server not installed")
async def test_a_unix_socket_url_is_served(tmp_path: Path) -> None:
    assert REDIS_SERVER is not None
    socket = tmp_path / "redis.sock"
    server = await asyncio.create_subprocess_exec(
        REDIS_SERVER,
        "--port",
        "0",
        "--unixsocket",
        str(socket),
        "--save",
        "",
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if socket.exists():
                break
            await asyncio.sleep(0.05)
        pipe = RedisPipe.from_url(f"unix://{socket}?db=1")
        assert pipe is not None
        try:
            await pipe.execute("SET", "k", "v")
            assert await pipe.execute("GET", "k") == b"v"
            assert b" db=1 " in await pipe.execute("CLIENT", "INFO")
        finally:
            await pipe.aclose()
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)


async def test_tls_urls_go_through_redis_py(redis: Redis) -> None:
    assert RedisPipe.from_url("rediss://127.0.0.1:6380/0") is None
    assert isinstance(commands_for("rediss://127.0.0.1:6380/0", redis), RedisPyCommands)
    assert isinstance(commands_for("redis://127.0.0.1:6379/0", redis), RedisPipe)


def test_the_pipe_runs_on_uvloop(redis_url: str) -> None:
    """The server runs on uvloop, whose transports are not asyncio's classes."""

    async def scenario() -> None:
        pipe = RedisPipe.from_url(redis_url)
        assert pipe is not None
        try:
            payloads = [f"{i}:" + "y" * (i * 7919 % 50_000) for i in range(100)]
            replies = await asyncio.gather(*(pipe.execute("ECHO", p) for p in payloads))
            assert replies == [p.encode() for p in payloads]
            assert await pipe.run(Script("return ARGV[1]"), [], ["ok"]) == b"ok"
        finally:
            await pipe.aclose()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())


async def test_a_server_that_never_greets_back_is_hung_up_on_and_not_retried_at_once() -> None:
    """A peer that accepts the connection but never answers AUTH: the connect times out, the
    connection is closed (not left open with its watchdog), and the next call does not
    queue behind another attempt."""
    closed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client hangs up
        closed.set()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pipe = RedisPipe(port=port, password="secret", connect_timeout=0.2)
    try:
        with pytest.raises(exceptions.ConnectionError, match="timed out") as caught:
            await pipe.execute("PING")
        assert "secret" not in str(caught.value)
        await asyncio.wait_for(closed.wait(), 2)
        with pytest.raises(exceptions.ConnectionError, match="next attempt in"):
            await pipe.execute("PING")
    finally:
        await pipe.aclose()
        server.close()
        await server.wait_closed()
