"""Finding a bot by API key or public slug without hashing-and-querying on every turn.

Entries live a short while in process memory. A change to a bot (new key, deletion, new
settings) drops them here at once; with Redis, it also bumps the bot's generation number,
which every turn reads in the same round trip as its rate limits, so other replicas notice
on their next request.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from nectar import security
from nectar.bots.models import NectarBot
from nectar.knowledge.models import BotHoneyJar
from nectar.ratelimit import Limiter

TTL_SECONDS = 30.0
MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class BotSnapshot:
    id: uuid.UUID
    name: str
    slug: str | None
    description: str
    status: str
    is_public: bool
    system_prompt: str
    jar_ids: tuple[uuid.UUID, ...]
    max_conversation_length: int
    confidence_threshold: float
    rate_limit_per_hour: int
    rate_limit_per_day: int
    handoff_enabled: bool
    handoff_keywords: tuple[str, ...]
    handoff_confidence_threshold: float
    handoff_settings: dict[str, Any]
    generation: str | None


def generation_key(bot_id: uuid.UUID) -> str:
    return f"botgen:{bot_id}"


_BOTS = NectarBot.__table__  # type: ignore[attr-defined]
_LINKS = BotHoneyJar.__table__  # type: ignore[attr-defined]


class BotDirectory:
    def __init__(self, engine: AsyncEngine, limiter: Limiter) -> None:
        self._engine = engine
        self._limiter = limiter
        self._entries: dict[str, tuple[float, BotSnapshot]] = {}

    async def by_key(self, api_key: str) -> BotSnapshot | None:
        digest = security.hash_secret(api_key)
        return await self._get("k:" + digest, _BOTS.c.api_key_hash, digest)

    async def by_slug(self, slug: str) -> BotSnapshot | None:
        return await self._get("s:" + slug, _BOTS.c.slug, slug)

    async def _get(self, cache_key: str, column: sa.Column[str], value: str) -> BotSnapshot | None:
        entry = self._entries.get(cache_key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        # Built only on a miss: composing a SQL expression costs more than the cache hit.
        snapshot = await self._load(column == value)
        if snapshot is not None:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[cache_key] = (time.monotonic() + TTL_SECONDS, snapshot)
        else:
            self._entries.pop(cache_key, None)
        return snapshot

    async def _load(self, where: sa.ColumnElement[bool]) -> BotSnapshot | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(_BOTS).where(where))).mappings().first()
            if row is None:
                return None
            # Read the generation before the rest: a change committed meanwhile bumps it
            # past what we store, so the next turn reloads.
            _, generation = await self._limiter.hit_many([], read=generation_key(row["id"]))
            row = (await conn.execute(sa.select(_BOTS).where(where))).mappings().first()
            if row is None:
                return None
            jars = await conn.execute(
                sa.select(_LINKS.c.jar_id)
                .where(_LINKS.c.bot_id == row["id"])
                .order_by(_LINKS.c.position)
            )
            jar_ids = tuple(r[0] for r in jars)
        return BotSnapshot(
            id=row["id"],
            name=row["name"],
            slug=row["slug"],
            description=row["description"],
            status=row["status"],
            is_public=row["is_public"],
            system_prompt=row["system_prompt"],
            jar_ids=jar_ids,
            max_conversation_length=row["max_conversation_length"],
            confidence_threshold=row["confidence_threshold"],
            rate_limit_per_hour=row["rate_limit_per_hour"],
            rate_limit_per_day=row["rate_limit_per_day"],
            handoff_enabled=row["handoff_enabled"],
            handoff_keywords=tuple(row["handoff_keywords"] or ()),
            handoff_confidence_threshold=row["handoff_confidence_threshold"],
            handoff_settings=dict(row["handoff_settings"] or {}),
            generation=generation,
        )

    def forget(self, bot_id: uuid.UUID) -> None:
        for key in [k for k, (_, snap) in self._entries.items() if snap.id == bot_id]:
            del self._entries[key]

    async def changed(self, bot_id: uuid.UUID) -> None:
        """Call after a bot's change has committed."""
        self.forget(bot_id)
        await self._limiter.incr(generation_key(bot_id))
