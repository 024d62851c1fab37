"""The SLA check (a periodic job): a handoff not accepted, or not resolved, in time for its
urgency is escalated: urgency up one level, new targets, and everyone who should hear of it
is notified (``handoff.escalated``)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from nectar.db import new_id, utcnow
from nectar.handoffs.detection.base import URGENCY_ORDER
from nectar.handoffs.models import Handoff, HandoffEvent, HandoffStatus
from nectar.notifications import outbox
from nectar.notifications.channels.base import EventType
from nectar.notifications.tasks import Runtime

_H = Handoff.__table__  # type: ignore[attr-defined]
_E = HandoffEvent.__table__  # type: ignore[attr-defined]
BATCH = 100


def _raise(urgency: str) -> str:
    levels = [u.value for u in URGENCY_ORDER]
    index = levels.index(urgency) if urgency in levels else 1
    return levels[min(index + 1, len(levels) - 1)]


async def check_sla(runtime: Runtime) -> int:
    """Escalate every breached handoff once per breach; returns how many were escalated."""
    now = utcnow()
    sla = runtime.config.handoff.sla
    to_enqueue: list[uuid.UUID] = []
    escalated = 0
    async with runtime.engine.begin() as conn:
        breached = (
            (
                await conn.execute(
                    sa.select(_H)
                    .where(
                        sa.or_(
                            sa.and_(
                                _H.c.status == HandoffStatus.pending.value, _H.c.accept_due_at < now
                            ),
                            sa.and_(
                                _H.c.status.in_(
                                    [HandoffStatus.assigned.value, HandoffStatus.in_progress.value]
                                ),
                                _H.c.resolve_due_at < now,
                            ),
                        )
                    )
                    .order_by(_H.c.created_at)
                    .limit(BATCH)
                )
            )
            .mappings()
            .all()
        )
        for h in breached:
            breach = "accept" if h["status"] == HandoffStatus.pending.value else "resolve"
            new_urgency = _raise(h["urgency"])
            target = sla.for_urgency(new_urgency)
            values: dict[str, Any] = {
                "urgency": new_urgency,
                "escalation_level": h["escalation_level"] + 1,
                "updated_at": now,
                # The clock restarts at the new level's target, so a breach escalates once.
                "accept_due_at": now + timedelta(minutes=target.accept_minutes),
                "resolve_due_at": now + timedelta(minutes=target.resolve_minutes),
            }
            done = await conn.execute(
                sa.update(_H)
                .where(_H.c.id == h["id"], _H.c.escalation_level == h["escalation_level"])
                .values(**values)
            )
            if done.rowcount != 1:  # another checker got there first
                continue
            escalated += 1
            detail = {
                "breach": breach,
                "from_urgency": h["urgency"],
                "to_urgency": new_urgency,
                "level": h["escalation_level"] + 1,
            }
            await conn.execute(
                sa.insert(_E).values(
                    id=new_id(),
                    handoff_id=h["id"],
                    kind="escalated",
                    actor_id=None,
                    from_status=None,
                    to_status=None,
                    detail=detail,
                    created_at=now,
                )
            )
            to_enqueue += await outbox.plan(
                conn,
                runtime.config,
                handoff_id=h["id"],
                event=EventType.escalated,
                now=now,
                notify_users=[h["assignee_id"]] if h["assignee_id"] else None,
                data=detail,
            )
    if to_enqueue:
        await runtime.enqueue(to_enqueue)
    return escalated
