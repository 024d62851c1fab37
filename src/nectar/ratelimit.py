"""Fixed-window counters: in-process for the embedded mode, Redis when configured.

Windows are aligned to the clock (an hourly limit resets on the hour), so every replica agrees
on when a window ends. Increments are atomic: concurrent requests cannot race past a limit.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Protocol

from redis.exceptions import RedisError

from nectar.redis_pipe import Commands, Script

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Window:
    count: int
    limit: int
    reset_in: int  # seconds until this window ends

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)


class Limiter(Protocol):
    async def hit(self, key: str, limit: int, window: int, cost: int = 1) -> Window: ...

    async def peek(self, key: str, limit: int, window: int) -> Window: ...

    async def clear(self, key: str, window: int) -> None: ...

    async def hit_many(
        self, hits: list[tuple[str, int, int]], read: str | None = None
    ) -> tuple[list[Window], str | None]:
        """Count one hit in each (key, limit, window) at once; also return the value of
        ``read`` (a plain key) from the same round trip."""
        ...

    async def incr(self, key: str) -> None:
        """Bump a plain counter (used as a generation number)."""
        ...


def _bucket(window: int, now: float) -> tuple[int, int]:
    start = int(now // window) * window
    return start, max(1, math.ceil(start + window - now))


class MemoryLimiter:
    """For a single process. Expired buckets are dropped as new ones are made."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int, int], int] = {}
        self._plain: dict[str, str] = {}

    async def hit(self, key: str, limit: int, window: int, cost: int = 1) -> Window:
        start, reset_in = _bucket(window, time.time())
        bucket = (key, window, start)
        if bucket not in self._counts and len(self._counts) > 10_000:
            self._expire()
        count = self._counts.get(bucket, 0) + cost
        self._counts[bucket] = count
        return Window(count, limit, reset_in)

    async def peek(self, key: str, limit: int, window: int) -> Window:
        start, reset_in = _bucket(window, time.time())
        return Window(self._counts.get((key, window, start), 0), limit, reset_in)

    async def clear(self, key: str, window: int) -> None:
        start, _ = _bucket(window, time.time())
        self._counts.pop((key, window, start), None)

    async def hit_many(
        self, hits: list[tuple[str, int, int]], read: str | None = None
    ) -> tuple[list[Window], str | None]:
        windows = [await self.hit(key, limit, window) for key, limit, window in hits]
        return windows, self._plain.get(read) if read else None

    async def incr(self, key: str) -> None:
        self._plain[key] = str(int(self._plain.get(key, "0")) + 1)

    def _expire(self) -> None:
        now = time.time()
        for bucket in [b for b in self._counts if b[2] + b[1] <= now]:
            del self._counts[bucket]


_HIT = Script(
    """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return n
"""
)


_HIT_MANY = Script(
    """
local out = {}
local n = #KEYS
if ARGV[1] == '1' then n = n - 1 end
for i = 1, n do
  local c = redis.call('INCR', KEYS[i])
  if c == 1 then redis.call('EXPIRE', KEYS[i], ARGV[i + 1]) end
  out[i] = c
end
if ARGV[1] == '1' then
  out[n + 1] = redis.call('GET', KEYS[n + 1]) or false
end
return out
"""
)


class RedisLimiter:
    """Shared by every replica. One round trip per hit (INCRBY + EXPIRE in a script)."""

    def __init__(self, redis: Commands, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def _key(self, key: str, window: int, start: int) -> str:
        return f"{self._prefix}:rl:{key}:{window}:{start}"

    async def hit(self, key: str, limit: int, window: int, cost: int = 1) -> Window:
        start, reset_in = _bucket(window, time.time())
        count = await self._redis.run(_HIT, [self._key(key, window, start)], [cost, window + 5])
        return Window(int(count), limit, reset_in)

    async def peek(self, key: str, limit: int, window: int) -> Window:
        start, reset_in = _bucket(window, time.time())
        value = await self._redis.execute("GET", self._key(key, window, start))
        return Window(int(value or 0), limit, reset_in)

    async def clear(self, key: str, window: int) -> None:
        start, _ = _bucket(window, time.time())
        await self._redis.execute("DEL", self._key(key, window, start))

    async def hit_many(
        self, hits: list[tuple[str, int, int]], read: str | None = None
    ) -> tuple[list[Window], str | None]:
        now = time.time()
        keys: list[str | int] = []
        expiries: list[str | int] = []
        resets = []
        for key, _limit, window in hits:
            start, reset_in = _bucket(window, now)
            keys.append(self._key(key, window, start))
            expiries.append(window + 5)
            resets.append(reset_in)
        if read:
            keys.append(f"{self._prefix}:{read}")
        result = await self._redis.run(_HIT_MANY, keys, ["1" if read else "0", *expiries])
        windows = [
            Window(int(count), limit, reset)
            for count, (_key, limit, _window), reset in zip(result, hits, resets, strict=False)
        ]
        value = result[len(hits)] if read and len(result) > len(hits) else None
        if isinstance(value, bytes):
            value = value.decode()
        return windows, value

    async def incr(self, key: str) -> None:
        await self._redis.execute("INCR", f"{self._prefix}:{key}")


class FallbackLimiter:
    """Redis first; while Redis is unreachable, count in this process instead of failing
    the request (limits become per replica until Redis is back)."""

    def __init__(self, primary: Limiter, fallback: Limiter) -> None:
        self._primary = primary
        self._fallback = fallback
        self._warned_at = 0.0

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > 60:
            self._warned_at = now
            log.warning("Redis unreachable for rate limits (%s); counting in-process", exc)

    async def hit(self, key: str, limit: int, window: int, cost: int = 1) -> Window:
        try:
            return await self._primary.hit(key, limit, window, cost)
        except (RedisError, OSError) as exc:
            self._warn(exc)
            return await self._fallback.hit(key, limit, window, cost)

    async def peek(self, key: str, limit: int, window: int) -> Window:
        try:
            return await self._primary.peek(key, limit, window)
        except (RedisError, OSError) as exc:
            self._warn(exc)
            return await self._fallback.peek(key, limit, window)

    async def clear(self, key: str, window: int) -> None:
        try:
            await self._primary.clear(key, window)
        except (RedisError, OSError) as exc:
            self._warn(exc)
            await self._fallback.clear(key, window)

    async def hit_many(
        self, hits: list[tuple[str, int, int]], read: str | None = None
    ) -> tuple[list[Window], str | None]:
        try:
            return await self._primary.hit_many(hits, read)
        except (RedisError, OSError) as exc:
            self._warn(exc)
            return await self._fallback.hit_many(hits, read)

    async def incr(self, key: str) -> None:
        try:
            await self._primary.incr(key)
        except (RedisError, OSError) as exc:
            self._warn(exc)
            await self._fallback.incr(key)
