"""The in-app inbox: each user reads and clears their own notifications, nobody else's."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nectar.db import after_commit, utcnow
from nectar.events import EventBus, user_channel
from nectar.notifications.exceptions import NotificationNotFound
from nectar.notifications.models import Notification
from nectar.notifications.schemas import NotificationOut
from nectar.pagination import PageParams, Pagination


def payload(notification: Notification | Mapping[str, Any]) -> dict[str, Any]:
    return NotificationOut.model_validate(notification).model_dump(mode="json")


def created_event(notification: Notification | Mapping[str, Any]) -> dict[str, Any]:
    """What live subscribers of the user's channel receive when a notification arrives."""
    return {"type": "notification", "notification": payload(notification)}


async def by_delivery(session: AsyncSession, delivery_id: uuid.UUID) -> Notification | None:
    rows = await session.exec(select(Notification).where(Notification.delivery_id == delivery_id))
    return rows.first()


async def add(session: AsyncSession, notification: Notification) -> Notification:
    session.add(notification)
    await session.flush()
    return notification


async def unread_count(session: AsyncSession, user_id: uuid.UUID) -> int:
    query = select(func.count()).where(
        Notification.user_id == user_id, col(Notification.read_at).is_(None)
    )
    return int((await session.exec(query)).one())


async def list_for(
    session: AsyncSession, user_id: uuid.UUID, page: PageParams, *, unread: bool
) -> tuple[list[Notification], Pagination, int]:
    """Newest first; with ``unread`` only those not read yet. Also the unread count."""
    query = select(Notification).where(Notification.user_id == user_id)
    if unread:
        query = query.where(col(Notification.read_at).is_(None))
    total = (await session.exec(select(func.count()).select_from(query.subquery()))).one()
    rows = await session.exec(
        query.order_by(col(Notification.created_at).desc(), col(Notification.id).desc())
        .offset(page.offset)
        .limit(page.per_page)
    )
    return list(rows), page.result(total), await unread_count(session, user_id)


async def mark_read(
    session: AsyncSession, events: EventBus, user_id: uuid.UUID, notification_id: uuid.UUID
) -> tuple[Notification, int]:
    """Idempotent: reading a read notification keeps the time it was first read. Someone
    else's notification is not found, so ids cannot be probed. Also the unread count left."""
    rows = await session.exec(
        select(Notification).where(
            Notification.id == notification_id, Notification.user_id == user_id
        )
    )
    notification = rows.first()
    if notification is None:
        raise NotificationNotFound()
    if notification.read_at is None:
        notification.read_at = utcnow()
        session.add(notification)
        await session.flush()
        _announce_read(session, events, user_id, {"ids": [str(notification.id)]})
    return notification, await unread_count(session, user_id)


async def mark_all_read(session: AsyncSession, events: EventBus, user_id: uuid.UUID) -> int:
    """Mark every unread notification of this user read; how many there were."""
    result = await session.exec(
        sa.update(Notification)
        .where(col(Notification.user_id) == user_id, col(Notification.read_at).is_(None))
        .values(read_at=utcnow())
    )
    updated = int(result.rowcount)
    if updated:
        _announce_read(session, events, user_id, {"all": True})
    return updated


def _announce_read(
    session: AsyncSession, events: EventBus, user_id: uuid.UUID, what: dict[str, Any]
) -> None:
    """Other open tabs of the same user update their badge once this is committed."""
    event = {"type": "read", **what}
    after_commit(session, lambda: events.publish(user_channel(user_id), event))
