"""Server-Sent Events for a user's inbox: what they missed, then every new notification live.

Events: ``notification`` (``id`` = the notification id, so a reconnecting EventSource sends
it back as Last-Event-ID) and ``read`` (``{"ids": [...]}`` or ``{"all": true}``, when
another tab marked something read; no ``id``, so it does not move the resume point).
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from nectar.events import EventBus, user_channel
from nectar.notifications.models import Notification
from nectar.notifications.schemas import NotificationOut

_N = Notification.__table__  # type: ignore[attr-defined]
UNREAD_BACKLOG = 100
RESUME_BACKLOG = 500
_REMEMBERED = 1000


def _payload(row: Any) -> dict[str, Any]:
    return NotificationOut.model_validate(dict(row)).model_dump(mode="json")


async def backlog(
    engine: AsyncEngine, user_id: uuid.UUID, after: uuid.UUID | None
) -> list[dict[str, Any]]:
    """Oldest first. After a known notification of this user: everything newer (in
    (created_at, id) order). Otherwise, or for an id we do not know: the newest unread."""
    async with engine.connect() as conn:
        mine = _N.c.user_id == user_id
        start = None
        if after is not None:
            start = (
                await conn.execute(
                    sa.select(_N.c.created_at, _N.c.id).where(mine, _N.c.id == after)
                )
            ).first()
        if start is not None:
            created_at, last_id = start
            newer = sa.or_(
                _N.c.created_at > created_at,
                sa.and_(_N.c.created_at == created_at, _N.c.id > last_id),
            )
            rows = await conn.execute(
                sa.select(_N)
                .where(mine, newer)
                .order_by(_N.c.created_at, _N.c.id)
                .limit(RESUME_BACKLOG)
            )
            return [_payload(r) for r in rows.mappings()]
        rows = await conn.execute(
            sa.select(_N)
            .where(mine, _N.c.read_at.is_(None))
            .order_by(_N.c.created_at.desc(), _N.c.id.desc())
            .limit(UNREAD_BACKLOG)
        )
        return [_payload(r) for r in rows.mappings()][::-1]


async def follow(
    engine: AsyncEngine, events: EventBus, user_id: uuid.UUID, after: uuid.UUID | None
) -> AsyncIterator[dict[str, Any]]:
    """Subscribe first, then read the backlog, so nothing falls between the two; a
    notification that arrives both ways (or is announced twice by a retried delivery) is
    sent once."""
    async with events.subscribe(user_channel(user_id)) as live:
        sent: OrderedDict[str, None] = OrderedDict()

        def first_time(notification_id: str) -> bool:
            if notification_id in sent:
                return False
            sent[notification_id] = None
            if len(sent) > _REMEMBERED:
                sent.popitem(last=False)
            return True

        for notification in await backlog(engine, user_id, after):
            first_time(notification["id"])
            yield _notification(notification)
        async for event in live:
            kind = event.get("type")
            if kind == "notification":
                notification = event["notification"]
                if first_time(notification["id"]):
                    yield _notification(notification)
            elif kind == "read":
                what = {k: v for k, v in event.items() if k in ("ids", "all")}
                yield {"event": "read", "data": json.dumps(what)}


def _notification(notification: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": notification["id"],
        "event": "notification",
        "data": json.dumps(notification),
    }
