"""Who hears about a handoff event: one outbox row per (event, channel, recipient), written
in the caller's transaction. The ids are enqueued only after that transaction commits."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from nectar.config import NectarBotsConfig
from nectar.db import new_id
from nectar.notifications.channels.base import EventType
from nectar.notifications.models import Delivery, DeliveryStatus
from nectar.users.models import User

_D = Delivery.__table__  # type: ignore[attr-defined]
_U = User.__table__  # type: ignore[attr-defined]

# Which events each external platform follows.
EXTERNAL_EVENTS: dict[str, set[EventType]] = {
    "slack": {
        EventType.created,
        EventType.assigned,
        EventType.resolved,
        EventType.escalated,
        EventType.cancelled,
    },
    "teams": {
        EventType.created,
        EventType.assigned,
        EventType.resolved,
        EventType.escalated,
        EventType.cancelled,
    },
    "pagerduty": {
        EventType.created,
        EventType.assigned,
        EventType.resolved,
        EventType.escalated,
        EventType.cancelled,
    },
    "zendesk": {
        EventType.created,
        EventType.assigned,
        EventType.resolved,
        EventType.escalated,
        EventType.cancelled,
    },
    "servicenow": {
        EventType.created,
        EventType.assigned,
        EventType.resolved,
        EventType.escalated,
        EventType.cancelled,
    },
}
INTERNAL = ("in_app", "email")


def delivery_row(
    handoff_id: uuid.UUID | None,
    event: EventType,
    channel: str,
    recipient: str,
    now: datetime,
    max_attempts: int,
    user_id: uuid.UUID | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "handoff_id": handoff_id,
        "event": event.value,
        "channel": channel,
        "recipient": recipient,
        "recipient_user_id": user_id,
        "data": data or {},
        "status": DeliveryStatus.pending.value,
        "attempts": 0,
        "max_attempts": max_attempts,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


async def _people(
    conn: AsyncConnection, roles: list[str], user_ids: list[uuid.UUID]
) -> list[tuple[uuid.UUID, str]]:
    if not roles and not user_ids:
        return []
    query = sa.select(_U.c.id, _U.c.email).where(
        _U.c.is_active.is_(True), sa.or_(_U.c.role.in_(roles), _U.c.id.in_(user_ids))
    )
    return [(r.id, r.email) for r in await conn.execute(query)]


def external_targets(config: NectarBotsConfig, event: EventType) -> list[tuple[str, str]]:
    """(channel, recipient) for every active platform integration that follows this event."""
    handoff = config.handoff
    if handoff.mode != "enterprise_external":
        return []
    integrations = handoff.integrations
    targets = [
        (name, name)
        for name in EXTERNAL_EVENTS
        if getattr(integrations, name).is_active
        and (event in EXTERNAL_EVENTS[name] or event is EventType.test)
    ]
    if integrations.webhook.is_active:
        for endpoint in integrations.webhook.endpoints:
            if _wants(endpoint.event_types, event):
                targets.append(("webhook", endpoint.url))
    return targets


def _wants(event_types: list[str], event: EventType) -> bool:
    """An endpoint lists the events it wants as ``handoff.created`` or ``created``; none
    listed means all. Tests go everywhere."""
    if event is EventType.test or not event_types:
        return True
    short = event.value.split(".", 1)[-1]
    return any(t in (event.value, short) for t in event_types)


async def plan(
    conn: AsyncConnection,
    config: NectarBotsConfig,
    *,
    handoff_id: uuid.UUID,
    event: EventType,
    now: datetime,
    bot_methods: list[str] | None = None,
    notify_users: list[uuid.UUID] | None = None,
    data: dict[str, Any] | None = None,
) -> list[uuid.UUID]:
    """Write the deliveries for one handoff event; returns their ids (enqueue after commit)."""
    people = await _people(conn, targeted_roles(config, event), notify_users or [])
    rows = plan_rows(
        config,
        handoff_id=handoff_id,
        event=event,
        now=now,
        people=people,
        bot_methods=bot_methods,
        data=data,
    )
    if rows:
        await conn.execute(sa.insert(_D), rows)
    return [row["id"] for row in rows]


def targeted_roles(config: NectarBotsConfig, event: EventType) -> list[str]:
    """New and escalated handoffs go to everyone in ``target_roles``."""
    if event in (EventType.created, EventType.escalated):
        return list(config.handoff.notifications.target_roles)
    return []


def plan_rows(
    config: NectarBotsConfig,
    *,
    handoff_id: uuid.UUID,
    event: EventType,
    now: datetime,
    people: list[tuple[uuid.UUID, str]],
    bot_methods: list[str] | None = None,
    data: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The delivery rows for one handoff event.

    ``people`` (active users: the targeted roles, or a delegated handoff's new assignee) get
    it in-app, and by email when configured; every event goes to the external platforms that
    follow it. A bot's own ``methods`` narrow the channels."""
    notifications = config.handoff.notifications
    channels = set(notifications.notification_types)
    if bot_methods is not None:
        channels &= set(bot_methods) | {"in_app"}  # the inbox is how agents see their queue
    attempts = notifications.delivery.max_attempts
    # When it happened, the same on every retry (a webhook's timestamp must not drift).
    data = {"occurred_at": now.isoformat(), **(data or {})}
    rows: list[dict[str, Any]] = []

    def add(channel: str, recipient: str, user_id: uuid.UUID | None = None) -> None:
        rows.append(
            delivery_row(handoff_id, event, channel, recipient, now, attempts, user_id, data)
        )

    for user_id, email in people:
        if "in_app" in channels:
            add("in_app", str(user_id), user_id)
        if "email" in channels and email:
            add("email", email, user_id)
    for channel, recipient in external_targets(config, event):
        if bot_methods is None or channel in bot_methods:
            add(channel, recipient)
    return rows
