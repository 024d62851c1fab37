"""The fixed-window limiters: in-process and Redis behave the same, and are exact."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from nectar.ratelimit import Limiter, MemoryLimiter, RedisLimiter, Window
from nectar.redis_pipe import Commands, RedisPipe, RedisPyCommands


@pytest.fixture(params=["memory", "redis", "redis-py"])
def limiter_kind(request: pytest.FixtureRequest) -> tuple[str, str, str] | None:
    """None for the in-process limiter, else (client, redis url, key prefix): the API's
    pipelined connection, or redis-py (TLS URLs)."""
    if request.param == "memory":
        return None
    return (
        request.param,
        request.getfixturevalue("redis_url"),
        request.getfixturevalue("redis_prefix"),
    )


def _commands(client: str, url: str, redis: Redis) -> Commands:
    if client == "redis-py":
        return RedisPyCommands(redis)
    pipe = RedisPipe.from_url(url)
    assert pipe is not None
    return pipe


@pytest.fixture
async def limiter(limiter_kind: tuple[str, str, str] | None) -> AsyncIterator[Limiter]:
    if limiter_kind is None:
        yield MemoryLimiter()
        return
    client, url, prefix = limiter_kind
    redis = Redis.from_url(url)
    commands = _commands(client, url, redis)
    try:
        yield RedisLimiter(commands, prefix)
    finally:
        await commands.aclose()
        keys = [key async for key in redis.scan_iter(match=f"{prefix}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


async def test_concurrent_hits_let_exactly_the_limit_through(limiter: Limiter) -> None:
    windows = await asyncio.gather(*(limiter.hit("burst", 100, 3600) for _ in range(300)))
    allowed = [w for w in windows if not w.exceeded]
    assert len(allowed) == 100
    # Every hit saw its own count: no two requests raced to the same number.
    assert sorted(w.count for w in windows) == list(range(1, 301))
    assert sorted(w.remaining for w in allowed) == list(range(100))
    assert all(w.remaining == 0 for w in windows if w.exceeded)
    assert (await limiter.peek("burst", 100, 3600)).count == 300


async def test_windows_are_aligned_to_the_clock(limiter: Limiter) -> None:
    for window in (1, 60, 3600, 86400):
        before = time.time()
        state = await limiter.hit(f"aligned-{window}", 10, window)
        assert 0 < state.reset_in <= window
        # The window ends on a multiple of its length (on the hour, at midnight UTC, ...).
        window_end = (int(before // window) + 1) * window
        assert abs((before + state.reset_in) - window_end) <= 1.5, (window, state)


async def test_a_new_window_starts_from_zero(limiter: Limiter) -> None:
    await limiter.hit("rollover", 1, 1)
    assert (await limiter.hit("rollover", 1, 1)).exceeded
    await asyncio.sleep(1 - time.time() % 1 + 0.02)  # into the next one-second window
    state = await limiter.hit("rollover", 1, 1)
    assert state.count == 1 and not state.exceeded


async def test_peek_does_not_count_and_clear_resets(limiter: Limiter) -> None:
    assert await limiter.peek("k", 3, 3600) == Window(
        0, 3, (await limiter.peek("k", 3, 3600)).reset_in
    )
    for _ in range(3):
        await limiter.hit("k", 3, 3600)
    for _ in range(5):
        state = await limiter.peek("k", 3, 3600)
        assert state.count == 3 and not state.exceeded and state.remaining == 0
    assert (await limiter.hit("k", 3, 3600)).exceeded

    await limiter.clear("k", 3600)
    state = await limiter.peek("k", 3, 3600)
    assert state.count == 0 and state.remaining == 3
    assert (await limiter.hit("k", 3, 3600)).count == 1


async def test_keys_windows_and_costs_are_separate(limiter: Limiter) -> None:
    await limiter.hit("a", 5, 3600, cost=4)
    assert (await limiter.peek("a", 5, 3600)).remaining == 1
    assert (await limiter.peek("b", 5, 3600)).count == 0
    # The same key with another window length is another counter (hourly vs daily limits).
    assert (await limiter.peek("a", 5, 86400)).count == 0
    assert (await limiter.hit("a", 5, 3600, cost=2)).exceeded
    await limiter.clear("a", 86400)
    assert (await limiter.peek("a", 5, 3600)).count == 6


async def test_redis_counters_expire_and_are_shared_between_replicas(
    redis_url: str, redis_prefix: str
) -> None:
    first, second = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        one = RedisLimiter(RedisPyCommands(first), redis_prefix)
        two = RedisLimiter(_commands("redis", redis_url, second), redis_prefix)
        await one.hit("shared", 2, 60)
        await two.hit("shared", 2, 60)
        assert (await one.hit("shared", 2, 60)).exceeded
        keys = [key async for key in first.scan_iter(match=f"{redis_prefix}:*")]
        assert len(keys) == 1
        assert 0 < await first.ttl(keys[0]) <= 65  # counters do not pile up in Redis
        await first.delete(*keys)
    finally:
        await first.aclose()
        await second.aclose()
