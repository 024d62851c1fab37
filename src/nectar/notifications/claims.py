"""The database side of one delivery attempt, in as few statements as the database allows.

A worker makes hundreds of attempts a second, so every statement is built once, at import,
with bind parameters, and the round trips are few:

* ``claim`` takes the delivery with one conditional UPDATE (still pending, due, and no
  earlier delivery of the same handoff to the same place still on its way: a job run twice
  sends once, and follow-ups go in order) and loads what the message will say: the handoff,
  its bot's and assignee's names and the last messages.
* ``record`` writes the attempt (status code, latency, error), the delivery's new state and,
  when a platform told us its ids, merges them into the handoff's ``external_refs``.

On PostgreSQL each is one statement outside any transaction, run on asyncpg directly
(``claims_pg``). SQLite (embedded mode, in-process) cannot put an UPDATE in
a CTE: there a claim is the UPDATE ... RETURNING and two SELECTs in one transaction, and a
record an INSERT and an UPDATE in another.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from nectar.bots.models import NectarBot
from nectar.chat.models import Message
from nectar.db import new_id
from nectar.handoffs.models import Handoff
from nectar.notifications.models import Delivery, DeliveryAttempt, DeliveryStatus
from nectar.users.models import User

D = Delivery.__table__  # type: ignore[attr-defined]
A = DeliveryAttempt.__table__  # type: ignore[attr-defined]
H = Handoff.__table__  # type: ignore[attr-defined]
B = NectarBot.__table__  # type: ignore[attr-defined]
U = User.__table__  # type: ignore[attr-defined]
M = Message.__table__  # type: ignore[attr-defined]

TRANSCRIPT_MESSAGES = 6
# A job may run a moment before its delivery is due (clocks, rounding of arq's defer).
EARLY = timedelta(seconds=1)

PENDING = DeliveryStatus.pending.value
SENDING = DeliveryStatus.sending.value


@dataclass(frozen=True, slots=True)
class HandoffRow:
    """What a notification may say about a handoff, as stored (not yet scrubbed)."""

    id: uuid.UUID
    bot_id: uuid.UUID
    bot_name: str
    conversation_id: uuid.UUID
    status: str
    reason: str
    urgency: str
    summary: str
    created_at: datetime
    resolution_notes: str | None
    # None: nobody holds it. Otherwise the agent's display name, never their email address.
    assignee_name: str | None
    user_name: str | None
    external_refs: dict[str, Any]
    transcript: list[dict[str, str]]  # oldest first


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this worker now holds for one attempt (until its lease runs out)."""

    id: uuid.UUID
    handoff_id: uuid.UUID | None
    event: str
    channel: str
    recipient: str
    data: dict[str, Any]
    attempts: int  # including this one
    max_attempts: int
    handoff: HandoffRow | None


@dataclass(frozen=True, slots=True)
class Waiting:
    """An earlier delivery of the same handoff to the same place is still on its way; it is
    next tried at ``earlier_at``."""

    earlier_at: datetime


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt went and what the delivery becomes."""

    delivery_id: uuid.UUID
    handoff_id: uuid.UUID | None
    number: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None  # None: it succeeded
    status: DeliveryStatus
    finished_at: datetime
    next_attempt_at: datetime | None = None  # a retry's
    external_refs: dict[str, Any] = field(default_factory=dict)


# Bind parameters are all named p_*: a name equal to a column's would be taken by SQLAlchemy
# as a value for that column in an INSERT or UPDATE.

# --- claim ------------------------------------------------------------------------------------

_earlier = D.alias("earlier")
_SAME_PLACE_BEFORE = sa.and_(
    _earlier.c.handoff_id == D.c.handoff_id,
    _earlier.c.channel == D.c.channel,
    _earlier.c.recipient == D.c.recipient,
    _earlier.c.created_at < D.c.created_at,
    # Still on its way (a dead one holds nothing back). Not IN (...): an expanding parameter
    # is rewritten on every execution.
    sa.or_(_earlier.c.status == PENDING, _earlier.c.status == SENDING),
)


def claim_statement(match: Any) -> Any:
    """The conditional UPDATE that takes deliveries (``match``: which ids) for an attempt."""
    return (
        sa.update(D)
        .where(
            match,
            D.c.status == PENDING,
            D.c.next_attempt_at <= sa.bindparam("p_due"),
            ~sa.exists().where(_SAME_PLACE_BEFORE),
        )
        .values(
            status=SENDING,
            attempts=D.c.attempts + 1,
            lease_until=sa.bindparam("p_lease_until"),
            updated_at=sa.bindparam("p_now"),
        )
        .returning(
            D.c.id,
            D.c.handoff_id,
            D.c.event,
            D.c.channel,
            D.c.recipient,
            D.c.data,
            D.c.attempts,
            D.c.max_attempts,
        )
    )


def why_not_statement(match: Any) -> Any:
    """Why a claim took nothing: the delivery's status and, if one is on its way, when the
    earlier delivery to the same place is next tried."""
    return sa.select(
        D.c.id,
        D.c.status,
        sa.select(_earlier.c.next_attempt_at)
        .where(_SAME_PLACE_BEFORE)
        .order_by(_earlier.c.next_attempt_at.desc())
        .limit(1)
        .scalar_subquery()
        .label("earlier_at"),
    ).where(match)


def handoff_columns(user_name: Any) -> tuple[Any, ...]:
    """The handoff's columns a notification needs (``user_name``: how to read the user's
    name from the context snapshot, which can be large, on this database)."""
    return (
        H.c.bot_id,
        H.c.conversation_id,
        H.c.status.label("handoff_status"),
        H.c.reason,
        H.c.urgency,
        H.c.summary,
        H.c.created_at,
        H.c.resolution_notes,
        H.c.assignee_id,
        H.c.external_refs,
        user_name.label("user_name"),
        B.c.name.label("bot_name"),
        U.c.name.label("assignee_name"),
    )


def with_names(handoffs: Any) -> Any:
    """``handoffs`` joined to the bot's and the assignee's rows."""
    return handoffs.outerjoin(B, B.c.id == H.c.bot_id).outerjoin(U, U.c.id == H.c.assignee_id)


_ONE = D.c.id == sa.bindparam("p_delivery_id")
_CLAIM = claim_statement(_ONE)
_WHY_NOT = why_not_statement(_ONE)
_HANDOFF = (
    sa.select(*handoff_columns(H.c.context[("user_info", "name")].as_string()))
    .select_from(with_names(H))
    .where(H.c.id == sa.bindparam("p_handoff_id"))
)
_TRANSCRIPT = (
    sa.select(M.c.role, M.c.content)
    .where(M.c.conversation_id == sa.bindparam("p_conversation_id"))
    .order_by(M.c.seq.desc())
    .limit(TRANSCRIPT_MESSAGES)
)


def handoff_row(
    row: Mapping[Any, Any], handoff_id: uuid.UUID, transcript: list[dict[str, str]]
) -> HandoffRow:
    assignee = (row["assignee_name"] or "an agent") if row["assignee_id"] is not None else None
    return HandoffRow(
        id=handoff_id,
        bot_id=row["bot_id"],
        bot_name=row["bot_name"] or "",
        conversation_id=row["conversation_id"],
        status=row["handoff_status"],
        reason=row["reason"],
        urgency=row["urgency"],
        summary=row["summary"],
        created_at=row["created_at"],
        resolution_notes=row["resolution_notes"],
        assignee_name=assignee,
        user_name=row["user_name"],
        external_refs=dict(row["external_refs"] or {}),
        transcript=transcript,
    )


def claimed_row(
    row: Mapping[Any, Any], delivery_id: uuid.UUID, handoff: HandoffRow | None
) -> Claimed:
    return Claimed(
        id=delivery_id,
        handoff_id=row["handoff_id"],
        event=row["event"],
        channel=row["channel"],
        recipient=row["recipient"],
        data=dict(row["data"] or {}),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        handoff=handoff,
    )


def waiting(found: Mapping[Any, Any] | None) -> Waiting | None:
    """What a claim that took nothing means: Waiting, or None (not ours to send now)."""
    if found is None or found["status"] != PENDING or found["earlier_at"] is None:
        return None
    return Waiting(found["earlier_at"])


# --- record -----------------------------------------------------------------------------------

INSERT_ATTEMPT = sa.insert(A).values(
    id=sa.bindparam("p_attempt_id"),
    delivery_id=sa.bindparam("p_delivery_id"),
    number=sa.bindparam("p_number"),
    started_at=sa.bindparam("p_started_at"),
    duration_ms=sa.bindparam("p_duration_ms"),
    success=sa.bindparam("p_success"),
    status_code=sa.bindparam("p_status_code"),
    error=sa.bindparam("p_error"),
)
UPDATE_DELIVERY = (
    sa.update(D)
    .where(D.c.id == sa.bindparam("p_delivery_id"))
    .values(
        status=sa.bindparam("p_status"),
        # Both only ever set: a delivery is delivered once, and only a retry moves the time.
        delivered_at=sa.func.coalesce(
            sa.bindparam("p_delivered_at", type_=D.c.delivered_at.type), D.c.delivered_at
        ),
        next_attempt_at=sa.func.coalesce(
            sa.bindparam("p_next_attempt_at", type_=D.c.next_attempt_at.type),
            D.c.next_attempt_at,
        ),
        last_error=sa.bindparam("p_error"),
        last_status_code=sa.bindparam("p_status_code"),
        lease_until=None,
        updated_at=sa.bindparam("p_finished_at"),
    )
)


def record_params(outcome: Outcome) -> dict[str, Any]:
    delivered = outcome.status is DeliveryStatus.delivered
    return {
        "p_attempt_id": new_id(),
        "p_delivery_id": outcome.delivery_id,
        "p_number": outcome.number,
        "p_started_at": outcome.started_at,
        "p_duration_ms": outcome.duration_ms,
        "p_success": outcome.error is None,
        "p_status_code": outcome.status_code,
        "p_error": outcome.error,
        "p_status": outcome.status.value,
        "p_delivered_at": outcome.finished_at if delivered else None,
        "p_next_attempt_at": outcome.next_attempt_at,
        "p_finished_at": outcome.finished_at,
    }


async def merge_refs(conn: AsyncConnection, handoff_id: uuid.UUID, refs: dict[str, Any]) -> None:
    """Merge keys into the handoff's external_refs without losing another channel's (SQLite:
    the transaction holds the database's write lock, so nobody writes in between)."""
    current = (
        await conn.execute(
            sa.select(H.c.external_refs).where(H.c.id == handoff_id).with_for_update()
        )
    ).first()
    if current is None:  # the handoff was deleted meanwhile
        return
    merged = {**(current[0] or {}), **refs}
    await conn.execute(sa.update(H).where(H.c.id == handoff_id).values(external_refs=merged))


# --- the store --------------------------------------------------------------------------------


class Store:
    """The claim and the record of attempts, for one engine (built once per process)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres: Any = None
        if engine.dialect.name == "postgresql":
            from nectar.notifications.claims_pg import PostgresStore

            self._postgres = PostgresStore(engine)

    async def claim(
        self, delivery_id: uuid.UUID, now: datetime, lease: timedelta
    ) -> Claimed | Waiting | None:
        """Take the delivery for one attempt with what the message will say; ``Waiting`` if
        an earlier one to the same place must go first; None if it is not ours to send now
        (already taken, delivered, dead, or not due)."""
        if self._postgres is not None:
            result: Claimed | Waiting | None = await self._postgres.claim(delivery_id, now, lease)
            return result
        params = {
            "p_delivery_id": delivery_id,
            "p_due": now + EARLY,
            "p_lease_until": now + lease,
            "p_now": now,
        }
        async with self._engine.begin() as conn:
            row = (await conn.execute(_CLAIM, params)).mappings().first()
            if row is None:
                return waiting((await conn.execute(_WHY_NOT, params)).mappings().first())
            handoff = None
            if row["handoff_id"] is not None:
                found = (
                    (await conn.execute(_HANDOFF, {"p_handoff_id": row["handoff_id"]}))
                    .mappings()
                    .first()
                )
                if found is not None:
                    messages = await conn.execute(
                        _TRANSCRIPT, {"p_conversation_id": found["conversation_id"]}
                    )
                    transcript = [{"role": m.role, "content": m.content} for m in messages]
                    handoff = handoff_row(found, row["handoff_id"], transcript[::-1])
        return claimed_row(row, delivery_id, handoff)

    async def aclose(self) -> None:
        """Close PostgreSQL's connections (also closed when the engine is disposed)."""
        if self._postgres is not None:
            await self._postgres.aclose()

    async def record(self, outcome: Outcome) -> None:
        """Write the attempt and the delivery's new state (releasing its lease); returns once
        it is committed."""
        if self._postgres is not None:
            await self._postgres.record(outcome)
            return
        params = record_params(outcome)
        async with self._engine.begin() as conn:
            await conn.execute(INSERT_ATTEMPT, params)
            await conn.execute(UPDATE_DELIVERY, params)
            if outcome.external_refs and outcome.handoff_id is not None:
                await merge_refs(conn, outcome.handoff_id, outcome.external_refs)
