"""Admins' view of the outbox: every delivery with its attempts, retrying a dead one, and
test notifications through every configured channel."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nectar.config import NectarBotsConfig
from nectar.db import after_commit, session_scope, utcnow
from nectar.errors import Conflict, NotFound
from nectar.notifications import outbox
from nectar.notifications.channels.base import EventType
from nectar.notifications.models import Delivery, DeliveryAttempt, DeliveryStatus
from nectar.pagination import PageParams, Pagination
from nectar.queue import JobQueue
from nectar.users.models import User


class DeliveryNotFound(NotFound):
    code = "delivery_not_found"

    def __init__(self) -> None:
        super().__init__("delivery not found")


def shown_recipient(channel: str, recipient: str) -> str:
    """Webhook URLs may carry tokens in their path or query: show scheme, host and path."""
    if channel != "webhook":
        return recipient
    parts = urlsplit(recipient)
    path = parts.path if len(parts.path) <= 24 else parts.path[:12] + "…"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


async def list_deliveries(
    session: AsyncSession,
    page: PageParams,
    *,
    status: DeliveryStatus | None,
    channel: str | None,
    handoff_id: uuid.UUID | None,
) -> tuple[list[Delivery], dict[uuid.UUID, list[DeliveryAttempt]], Pagination]:
    query = select(Delivery)
    if status is not None:
        query = query.where(Delivery.status == status.value)
    if channel:
        query = query.where(Delivery.channel == channel)
    if handoff_id:
        query = query.where(Delivery.handoff_id == handoff_id)
    total = (await session.exec(select(func.count()).select_from(query.subquery()))).one()
    rows = list(
        await session.exec(
            query.order_by(col(Delivery.created_at).desc(), col(Delivery.id))
            .offset(page.offset)
            .limit(page.per_page)
        )
    )
    return rows, await attempts_of(session, [r.id for r in rows]), page.result(total)


async def attempts_of(
    session: AsyncSession, ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[DeliveryAttempt]]:
    found: dict[uuid.UUID, list[DeliveryAttempt]] = {i: [] for i in ids}
    if ids:
        rows = await session.exec(
            select(DeliveryAttempt)
            .where(col(DeliveryAttempt.delivery_id).in_(ids))
            .order_by(col(DeliveryAttempt.delivery_id), col(DeliveryAttempt.number))
        )
        for attempt in rows:
            found[attempt.delivery_id].append(attempt)
    return found


async def get_delivery(
    session: AsyncSession, delivery_id: uuid.UUID
) -> tuple[Delivery, list[DeliveryAttempt]]:
    delivery = await session.get(Delivery, delivery_id, populate_existing=True)
    if delivery is None:
        raise DeliveryNotFound()
    return delivery, (await attempts_of(session, [delivery.id]))[delivery.id]


async def retry(
    session: AsyncSession, queue: JobQueue, delivery_id: uuid.UUID
) -> tuple[Delivery, list[DeliveryAttempt]]:
    """Give a dead (or waiting) delivery a fresh set of attempts, now."""
    now = utcnow()
    result = await session.exec(
        sa.update(Delivery)
        .where(
            col(Delivery.id) == delivery_id,
            col(Delivery.status).in_([DeliveryStatus.dead.value, DeliveryStatus.pending.value]),
        )
        .values(
            status=DeliveryStatus.pending.value,
            max_attempts=Delivery.attempts + Delivery.max_attempts,
            next_attempt_at=now,
            updated_at=now,
        )
    )
    if result.rowcount != 1:
        delivery, _ = await get_delivery(session, delivery_id)
        raise Conflict(f"a delivery that is {delivery.status} cannot be retried")
    after_commit(session, lambda: queue.enqueue([delivery_id], tag=f"r{int(now.timestamp())}"))
    return await get_delivery(session, delivery_id)


async def send_test(
    session: AsyncSession,
    config: NectarBotsConfig,
    queue: JobQueue,
    actor: User,
    channels: list[str] | None,
) -> list[uuid.UUID]:
    """A test through every configured channel (or the ones named): in-app and email to the
    caller, and each external integration in enterprise mode."""
    now = utcnow()
    types = set(config.handoff.notifications.notification_types)
    attempts = config.handoff.notifications.delivery.max_attempts
    rows: list[dict[str, Any]] = []
    wanted = set(channels) if channels else None

    def add(channel: str, recipient: str, user_id: uuid.UUID | None = None) -> None:
        if wanted is None or channel in wanted:
            rows.append(
                outbox.delivery_row(
                    None, EventType.test, channel, recipient, now, attempts, user_id
                )
            )

    add("in_app", str(actor.id), actor.id)
    if "email" in types:
        add("email", actor.email, actor.id)
    for channel, recipient in outbox.external_targets(config, EventType.test):
        add(channel, recipient)
    if not rows:
        raise Conflict(
            "no configured channel matches; enable it in nectar_bots.handoff of the config"
        )
    conn = await session.connection()
    await conn.execute(sa.insert(Delivery.__table__), rows)  # type: ignore[attr-defined]
    ids = [row["id"] for row in rows]
    after_commit(session, lambda: queue.enqueue(ids))
    return ids


async def send_test_and_wait(
    sessions: async_sessionmaker[AsyncSession],
    config: NectarBotsConfig,
    queue: JobQueue,
    actor: User,
    channels: list[str] | None,
    wait_seconds: float,
) -> list[tuple[Delivery, list[DeliveryAttempt]]]:
    """Commit the test deliveries in their own unit of work (so workers can take them at
    once), then wait up to ``wait_seconds`` for every first attempt."""
    async with session_scope(sessions) as session:
        ids = await send_test(session, config, queue, actor, channels)
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while True:
        async with sessions() as session:
            rows = list(await session.exec(select(Delivery).where(col(Delivery.id).in_(ids))))
            waiting = any(r.attempts == 0 or r.status == DeliveryStatus.sending.value for r in rows)
            if not waiting or asyncio.get_running_loop().time() >= deadline:
                history = await attempts_of(session, ids)
                rows.sort(key=lambda r: (r.channel, r.recipient))
                return [(r, history[r.id]) for r in rows]
        await asyncio.sleep(0.05)
