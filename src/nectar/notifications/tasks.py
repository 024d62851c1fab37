"""Job bodies, shared by the arq worker and the in-process worker.

Jobs receive ids and reload rows. Every job is idempotent: a delivery is claimed with a
conditional UPDATE (so two workers cannot both send it), a delivered one is skipped, and
every send carries an idempotency key, so a job that runs twice has one effect.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from nectar.bots.models import NectarBot
from nectar.chat.models import Message
from nectar.config import NectarBotsConfig
from nectar.db import new_id, utcnow
from nectar.handoffs.models import Handoff
from nectar.notifications.channels.base import (
    Delivery as DeliveryJob,
)
from nectar.notifications.channels.base import (
    DeliveryFailed,
    EventType,
    HandoffView,
)
from nectar.notifications.models import Delivery, DeliveryAttempt, DeliveryStatus
from nectar.notifications.registry import Channels
from nectar.queue import Enqueue
from nectar.users.models import User

log = logging.getLogger(__name__)

_D = Delivery.__table__  # type: ignore[attr-defined]
_A = DeliveryAttempt.__table__  # type: ignore[attr-defined]
_H = Handoff.__table__  # type: ignore[attr-defined]
_B = NectarBot.__table__  # type: ignore[attr-defined]
_U = User.__table__  # type: ignore[attr-defined]
_M = Message.__table__  # type: ignore[attr-defined]

LEASE_SECONDS = 60
# How long a delivery waits for an earlier one to the same place before trying again.
ORDER_DELAY = 0.5
TRANSCRIPT_MESSAGES = 6


@dataclass
class Runtime:
    """What a job needs; built once per worker process."""

    engine: AsyncEngine
    config: NectarBotsConfig
    channels: Channels
    enqueue: Enqueue
    public_url: str


def backoff(attempt: int, base: float, cap: float, retry_after: float | None) -> float:
    """Exponential with full jitter; a server's Retry-After is a floor."""
    delay = random.uniform(0, min(cap, base * 2 ** (attempt - 1)))  # noqa: S311 - jitter
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


async def _claim(conn: AsyncConnection, delivery_id: uuid.UUID, now: datetime) -> Any:
    """Take the delivery for one attempt, or None if it is not ours to send now."""
    row = (
        (
            await conn.execute(
                sa.update(_D)
                .where(
                    _D.c.id == delivery_id,
                    _D.c.status == DeliveryStatus.pending.value,
                    _D.c.next_attempt_at <= now + timedelta(seconds=1),
                )
                .values(
                    status=DeliveryStatus.sending.value,
                    attempts=_D.c.attempts + 1,
                    lease_until=now + timedelta(seconds=LEASE_SECONDS),
                    updated_at=now,
                )
                .returning(*_D.c)
            )
        )
        .mappings()
        .first()
    )
    return row


async def _view(
    conn: AsyncConnection, runtime: Runtime, handoff_id: uuid.UUID, external: bool
) -> tuple[HandoffView, dict[str, Any]]:
    h = (await conn.execute(sa.select(_H).where(_H.c.id == handoff_id))).mappings().one()
    bot_name = (
        await conn.execute(sa.select(_B.c.name).where(_B.c.id == h["bot_id"]))
    ).scalar_one_or_none() or ""
    assignee = None
    if h["assignee_id"] is not None:
        # The agent's display name; never their email address (it leaves our system).
        assignee = (
            await conn.execute(sa.select(_U.c.name).where(_U.c.id == h["assignee_id"]))
        ).scalar_one_or_none() or "an agent"
    transcript_rows = await conn.execute(
        sa.select(_M.c.role, _M.c.content)
        .where(_M.c.conversation_id == h["conversation_id"])
        .order_by(_M.c.seq.desc())
        .limit(TRANSCRIPT_MESSAGES)
    )
    user_info = (h["context"] or {}).get("user_info") or {}
    view = HandoffView(
        id=str(h["id"]),
        bot_id=str(h["bot_id"]),
        bot_name=bot_name,
        conversation_id=str(h["conversation_id"]),
        status=h["status"],
        reason=h["reason"],
        urgency=h["urgency"],
        severity=runtime.config.handoff.notifications.severity(h["urgency"]),
        summary=h["summary"],
        created_at=h["created_at"].isoformat(),
        url=f"{runtime.public_url.rstrip('/')}/api/nectar-bots/handoffs/{h['id']}",
        assignee_name=assignee,
        resolution_notes=h["resolution_notes"],
        user_name=user_info.get("name"),
        transcript=[{"role": r.role, "content": r.content} for r in transcript_rows][::-1],
    )
    if external:
        from nectar.notifications import pii

        view = pii.scrub_view(view)
    return view, dict(h["external_refs"] or {})


_EARLIER = _D.alias("earlier")


async def _waits_for_earlier(conn: AsyncConnection, delivery_id: uuid.UUID) -> datetime | None:
    """Follow-ups go in order: a platform must see the trigger before the resolve, and the
    ticket must exist before it is updated. An earlier delivery of the same handoff to the
    same place that is still on its way holds this one back (a dead one does not). Returns
    when that earlier one is next tried, or None."""
    query = (
        sa.select(_EARLIER.c.next_attempt_at)
        .select_from(_EARLIER.join(_D, _D.c.id == delivery_id))
        .where(
            _EARLIER.c.handoff_id == _D.c.handoff_id,
            _EARLIER.c.channel == _D.c.channel,
            _EARLIER.c.recipient == _D.c.recipient,
            _EARLIER.c.created_at < _D.c.created_at,
            _EARLIER.c.status.in_([DeliveryStatus.pending.value, DeliveryStatus.sending.value]),
        )
        .order_by(_EARLIER.c.next_attempt_at.desc())
        .limit(1)
    )
    found: datetime | None = (await conn.execute(query)).scalar_one_or_none()
    return found


async def deliver(runtime: Runtime, delivery_id: uuid.UUID) -> str:
    """Make one attempt at one delivery. Returns what happened (for logs and tests)."""
    now = utcnow()
    # One transaction: the order check, the claim and what the message will say.
    view: HandoffView | None = None
    refs: dict[str, Any] = {}
    async with runtime.engine.begin() as conn:
        earlier_at = await _waits_for_earlier(conn, delivery_id)
        if earlier_at is None:
            row = await _claim(conn, delivery_id, now)
            if row is None:
                return "skipped"
            channel = runtime.channels.get(row["channel"])
            if row["handoff_id"] is not None:
                external = bool(channel and channel.external)
                view, refs = await _view(conn, runtime, row["handoff_id"], external)
    if earlier_at is not None:
        delay = max(ORDER_DELAY, (earlier_at - now).total_seconds() + ORDER_DELAY)
        await runtime.enqueue([delivery_id], delay=delay, tag=f"w{int(now.timestamp())}")
        return "waiting"
    job = DeliveryJob(
        id=str(row["id"]),
        channel=row["channel"],
        event=EventType(row["event"]),
        handoff=view,
        recipient=row["recipient"],
        attempt=row["attempts"],
        idempotency_key=str(row["id"]),
        external_refs=refs,
        data=dict(row["data"] or {}),
    )
    started = time.perf_counter()
    error: DeliveryFailed | None = None
    result = None
    try:
        if channel is None:
            raise DeliveryFailed(f"channel {row['channel']} is not configured", retriable=False)
        result = await channel.send(job)
    except DeliveryFailed as exc:
        error = exc
    except Exception as exc:  # a bug in a channel: recorded, retried, never lost
        log.exception("channel %s crashed on delivery %s", row["channel"], row["id"])
        error = DeliveryFailed(f"{type(exc).__name__}: {exc}", retriable=True)
    elapsed = int((time.perf_counter() - started) * 1000)
    return await _record(runtime, row, job, result, error, now, elapsed)


async def _record(
    runtime: Runtime,
    row: Any,
    job: DeliveryJob,
    result: Any,
    error: DeliveryFailed | None,
    started_at: datetime,
    elapsed_ms: int,
) -> str:
    policy = runtime.config.handoff.notifications.delivery
    now = utcnow()
    outcome: str
    retry_in = 0.0
    async with runtime.engine.begin() as conn:
        await conn.execute(
            sa.insert(_A).values(
                id=new_id(),
                delivery_id=row["id"],
                number=row["attempts"],
                started_at=started_at,
                duration_ms=elapsed_ms,
                success=error is None,
                status_code=(
                    result.status_code if result else error.status_code if error else None
                ),
                error=str(error)[:2000] if error else None,
            )
        )
        if error is None:
            outcome = "delivered"
            values: dict[str, Any] = {
                "status": DeliveryStatus.delivered.value,
                "delivered_at": now,
                "last_error": None,
                "last_status_code": result.status_code if result else None,
            }
            if result is not None and result.external_refs and row["handoff_id"] is not None:
                await merge_refs(conn, row["handoff_id"], result.external_refs)
        elif error.retriable and row["attempts"] < row["max_attempts"]:
            outcome = "retry"
            retry_in = backoff(
                row["attempts"],
                policy.base_delay_seconds,
                policy.max_delay_seconds,
                error.retry_after,
            )
            values = {
                "status": DeliveryStatus.pending.value,
                "next_attempt_at": now + timedelta(seconds=retry_in),
                "last_error": str(error)[:2000],
                "last_status_code": error.status_code,
            }
        else:
            outcome = "dead"
            values = {
                "status": DeliveryStatus.dead.value,
                "last_error": str(error)[:2000],
                "last_status_code": error.status_code,
            }
        await conn.execute(
            sa.update(_D)
            .where(_D.c.id == row["id"])
            .values(lease_until=None, updated_at=now, **values)
        )
    if outcome == "retry":
        await runtime.enqueue([row["id"]], delay=retry_in, tag=f"a{row['attempts']}")
    if outcome == "dead":
        log.warning("delivery %s (%s) is dead: %s", row["id"], row["channel"], error)
    return outcome


async def merge_refs(conn: AsyncConnection, handoff_id: uuid.UUID, refs: dict[str, Any]) -> None:
    """Merge keys into the handoff's external_refs without losing another channel's."""
    current = (
        await conn.execute(
            sa.select(_H.c.external_refs).where(_H.c.id == handoff_id).with_for_update()
        )
    ).scalar_one_or_none()
    if current is None:  # the handoff was deleted meanwhile
        return
    merged = {**(current or {}), **refs}
    await conn.execute(sa.update(_H).where(_H.c.id == handoff_id).values(external_refs=merged))


async def sweep(runtime: Runtime) -> int:
    """Re-enqueue what was lost: pending deliveries overdue by more than a few seconds (a
    flushed Redis, a lost job) and ones whose worker died mid-send (lease expired)."""
    policy = runtime.config.handoff.notifications.delivery
    now = utcnow()
    async with runtime.engine.begin() as conn:
        await conn.execute(
            sa.update(_D)
            .where(_D.c.status == DeliveryStatus.sending.value, _D.c.lease_until < now)
            .values(status=DeliveryStatus.pending.value, lease_until=None, updated_at=now)
        )
        # A worker killed after its last allowed attempt leaves one that must not loop.
        await conn.execute(
            sa.update(_D)
            .where(
                _D.c.status == DeliveryStatus.pending.value,
                _D.c.attempts >= _D.c.max_attempts,
            )
            .values(
                status=DeliveryStatus.dead.value,
                updated_at=now,
                last_error=sa.func.coalesce(_D.c.last_error, "no attempts left"),
            )
        )
        overdue = [
            r[0]
            for r in await conn.execute(
                sa.select(_D.c.id)
                .where(
                    _D.c.status == DeliveryStatus.pending.value,
                    _D.c.next_attempt_at <= now - timedelta(seconds=policy.sweep_after_seconds),
                )
                .order_by(_D.c.next_attempt_at)
                .limit(1000)
            )
        ]
    if overdue:
        await runtime.enqueue(overdue, tag=f"s{int(time.time())}")
    return len(overdue)
