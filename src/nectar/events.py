"""Live events: fan-out to subscribers of a channel, in-process or through Redis pub/sub.

Events are hints, the database is the record: a subscriber that connects late (or misses
events while reconnecting) reads what it missed from the database first, then follows the
stream. So publishing is best-effort and never fails the request that caused it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any, Protocol

from redis.asyncio import Redis

from nectar.redis_pipe import Commands, RedisPyCommands

log = logging.getLogger(__name__)
QUEUE_SIZE = 1000


class EventBus(Protocol):
    async def publish(self, channel: str, event: dict[str, Any]) -> None: ...

    def subscribe(
        self, channel: str
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]: ...


class MemoryBus:
    """One process: every subscriber of a channel gets its own queue."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)

    async def publish(self, channel: str, event: dict[str, Any]) -> None:
        for queue in list(self._subscribers.get(channel, ())):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a stuck subscriber must not block the publisher
                log.warning("dropping an event for a slow subscriber of %s", channel)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers[channel].add(queue)

        async def events() -> AsyncIterator[dict[str, Any]]:
            while True:
                yield await queue.get()

        try:
            yield events()
        finally:
            self._subscribers[channel].discard(queue)
            if not self._subscribers[channel]:
                del self._subscribers[channel]


class RedisBus:
    """Across replicas: Redis pub/sub, one connection per subscriber; events are published
    through ``commands`` (the pipelined connection in the API)."""

    def __init__(self, redis: Redis, prefix: str, commands: Commands | None = None) -> None:
        self._redis = redis
        self._prefix = prefix
        self._commands = commands or RedisPyCommands(redis)

    def _name(self, channel: str) -> str:
        return f"{self._prefix}:events:{channel}"

    async def publish(self, channel: str, event: dict[str, Any]) -> None:
        try:
            await self._commands.execute(
                "PUBLISH", self._name(channel), json.dumps(event, default=str)
            )
        except Exception:
            log.warning("could not publish a live event on %s", channel, exc_info=True)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._name(channel))

        async def events() -> AsyncIterator[dict[str, Any]]:
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    data = message["data"]
                    yield json.loads(data.decode() if isinstance(data, bytes) else data)

        try:
            yield events()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.unsubscribe()
                await pubsub.aclose()  # type: ignore[no-untyped-call]


def conversation_channel(conversation_id: object) -> str:
    return f"conversation:{conversation_id}"


def user_channel(user_id: object) -> str:
    return f"user:{user_id}"
