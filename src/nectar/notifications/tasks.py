"""Job bodies, shared by the arq worker and the in-process worker.

Jobs receive ids and reload rows. Every job is idempotent: a delivery is claimed with a
conditional UPDATE (so two workers cannot both send it), a delivered one is skipped, and
every send carries an idempotency key, so a job that runs twice has one effect. The
database work of an attempt is two statements on PostgreSQL (see ``claims``).

What goes to an external channel is PII-scrubbed here, once, as a whole (the handoff's text
and the event data); channels send what they are given. In-app notifications keep it all.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from nectar.config import NectarBotsConfig
from nectar.db import utcnow
from nectar.notifications import pii
from nectar.notifications.channels.base import (
    Delivery as DeliveryJob,
)
from nectar.notifications.channels.base import (
    DeliveryFailed,
    EventType,
    HandoffView,
    SendResult,
)
from nectar.notifications.claims import Claimed, HandoffRow, Outcome, Store, Waiting
from nectar.notifications.models import Delivery, DeliveryStatus
from nectar.notifications.registry import Channels
from nectar.queue import Enqueue

log = logging.getLogger(__name__)

_D = Delivery.__table__  # type: ignore[attr-defined]

LEASE_SECONDS = 60
# How long a delivery waits for an earlier one to the same place before trying again.
ORDER_DELAY = 0.5
ERROR_CHARS = 2000


@dataclass
class Runtime:
    """What a job needs; built once per worker process."""

    engine: AsyncEngine
    config: NectarBotsConfig
    channels: Channels
    enqueue: Enqueue
    public_url: str
    store: Store = field(init=False)
    _handoff_url: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.store = Store(self.engine)
        self._handoff_url = f"{self.public_url.rstrip('/')}/api/nectar-bots/handoffs/"

    def view(self, handoff: HandoffRow) -> HandoffView:
        return HandoffView(
            id=str(handoff.id),
            bot_id=str(handoff.bot_id),
            bot_name=handoff.bot_name,
            conversation_id=str(handoff.conversation_id),
            status=handoff.status,
            reason=handoff.reason,
            urgency=handoff.urgency,
            severity=self.config.handoff.notifications.severity(handoff.urgency),
            summary=handoff.summary,
            created_at=handoff.created_at.isoformat(),
            url=f"{self._handoff_url}{handoff.id}",
            assignee_name=handoff.assignee_name,
            resolution_notes=handoff.resolution_notes,
            user_name=handoff.user_name,
            transcript=handoff.transcript,
        )


def backoff(attempt: int, base: float, cap: float, retry_after: float | None) -> float:
    """Exponential with full jitter; a server's Retry-After is a floor."""
    delay = random.uniform(0, min(cap, base * 2 ** (attempt - 1)))  # noqa: S311 - jitter
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


def _job(runtime: Runtime, claimed: Claimed, external: bool) -> DeliveryJob:
    handoff = claimed.handoff
    job = DeliveryJob(
        id=str(claimed.id),
        channel=claimed.channel,
        event=EventType(claimed.event),
        handoff=runtime.view(handoff) if handoff is not None else None,
        recipient=claimed.recipient,
        attempt=claimed.attempts,
        idempotency_key=str(claimed.id),
        external_refs=dict(handoff.external_refs) if handoff is not None else {},
        data=claimed.data,
    )
    return pii.scrub_delivery(job) if external else job


async def deliver(runtime: Runtime, delivery_id: uuid.UUID) -> str:
    """Make one attempt at one delivery. Returns what happened (for logs and tests)."""
    now = utcnow()
    claimed = await runtime.store.claim(delivery_id, now, timedelta(seconds=LEASE_SECONDS))
    if claimed is None:
        return "skipped"
    if isinstance(claimed, Waiting):
        wait = (claimed.earlier_at - now).total_seconds()
        delay = max(ORDER_DELAY, wait + ORDER_DELAY)
        await runtime.enqueue([delivery_id], delay=delay, tag=f"w{int(now.timestamp())}")
        return "waiting"
    channel = runtime.channels.get(claimed.channel)
    started = time.perf_counter()
    error: DeliveryFailed | None = None
    result: SendResult | None = None
    try:
        if channel is None:
            raise DeliveryFailed(f"channel {claimed.channel} is not configured", retriable=False)
        job = _job(runtime, claimed, channel.external)
        started = time.perf_counter()  # the attempt's latency is the send's
        result = await channel.send(job)
    except DeliveryFailed as exc:
        error = exc
    except Exception as exc:  # a bug in a channel: recorded, retried, never lost
        log.exception("channel %s crashed on delivery %s", claimed.channel, claimed.id)
        error = DeliveryFailed(f"{type(exc).__name__}: {exc}", retriable=True)
    elapsed = int((time.perf_counter() - started) * 1000)
    return await _record(runtime, claimed, result, error, now, elapsed)


async def _record(
    runtime: Runtime,
    claimed: Claimed,
    result: SendResult | None,
    error: DeliveryFailed | None,
    started_at: datetime,
    elapsed_ms: int,
) -> str:
    policy = runtime.config.handoff.notifications.delivery
    now = utcnow()
    retry_in = 0.0
    next_attempt_at = None
    if error is None:
        status = DeliveryStatus.delivered
    elif error.retriable and claimed.attempts < claimed.max_attempts:
        status = DeliveryStatus.pending
        retry_in = backoff(
            claimed.attempts,
            policy.base_delay_seconds,
            policy.max_delay_seconds,
            error.retry_after,
        )
        next_attempt_at = now + timedelta(seconds=retry_in)
    else:
        status = DeliveryStatus.dead
    await runtime.store.record(
        Outcome(
            delivery_id=claimed.id,
            handoff_id=claimed.handoff_id,
            number=claimed.attempts,
            started_at=started_at,
            duration_ms=elapsed_ms,
            status_code=result.status_code if result else error.status_code if error else None,
            error=str(error)[:ERROR_CHARS] if error else None,
            status=status,
            finished_at=now,
            next_attempt_at=next_attempt_at,
            external_refs=dict(result.external_refs) if result is not None else {},
        )
    )
    if status is DeliveryStatus.pending:
        await runtime.enqueue([claimed.id], delay=retry_in, tag=f"a{claimed.attempts}")
        return "retry"
    if status is DeliveryStatus.dead:
        log.warning("delivery %s (%s) is dead: %s", claimed.id, claimed.channel, error)
        return "dead"
    return "delivered"


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
