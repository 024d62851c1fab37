"""The handoff lifecycle: open, accept or delegate, reply, resolve or cancel.

pending → assigned → in_progress → resolved, or cancelled from any open state. Every change
is an event row. State changes are conditional UPDATEs, so two agents accepting at once
cannot both win.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nectar.bots.models import NectarBot
from nectar.chat.models import Conversation, Message, MessageRole
from nectar.chat.stream import message_payload
from nectar.config import NectarBotsConfig
from nectar.db import after_commit, new_id, utcnow
from nectar.errors import BadRequest, Forbidden
from nectar.events import EventBus, conversation_channel
from nectar.handoffs import templates
from nectar.handoffs.context import snapshot
from nectar.handoffs.detection.base import Decision, Reason, Urgency
from nectar.handoffs.exceptions import (
    AgentNotFound,
    HandoffAlreadyOpen,
    HandoffNotFound,
    InvalidTransition,
)
from nectar.handoffs.models import OPEN_STATUSES, Handoff, HandoffEvent, HandoffStatus
from nectar.handoffs.schemas import ReplyRequest
from nectar.notifications import outbox
from nectar.notifications.channels.base import EventType
from nectar.pagination import PageParams, Pagination
from nectar.queue import Enqueue
from nectar.users.models import Role, User

_H = Handoff.__table__  # type: ignore[attr-defined]
_E = HandoffEvent.__table__  # type: ignore[attr-defined]
_CONV = Conversation.__table__  # type: ignore[attr-defined]
_MSG = Message.__table__  # type: ignore[attr-defined]
_OPEN = [s.value for s in OPEN_STATUSES]
_WORKERS = (Role.admin.value, Role.agent.value)


@dataclass(frozen=True, slots=True)
class Effects:
    """What a lifecycle change sets off once it has committed: live events and
    notifications. Built by the router from the app's services."""

    config: NectarBotsConfig
    bus: EventBus | None = None
    enqueue: Enqueue | None = None


def _notify(session: AsyncSession, fx: Effects, delivery_ids: list[uuid.UUID]) -> None:
    if delivery_ids and fx.enqueue is not None:
        enqueue, ids = fx.enqueue, list(delivery_ids)
        after_commit(session, lambda: enqueue(ids))


async def _bot_methods(session: AsyncSession, bot_id: uuid.UUID) -> list[str] | None:
    bot = await session.get(NectarBot, bot_id)
    methods = (bot.handoff_settings or {}).get("methods") if bot else None
    return list(methods) if methods is not None else None


async def _plan(
    session: AsyncSession,
    fx: Effects,
    handoff: Handoff,
    event: EventType,
    now: datetime,
    notify_users: list[uuid.UUID] | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    conn = await session.connection()
    ids = await outbox.plan(
        conn,
        fx.config,
        handoff_id=handoff.id,
        event=event,
        now=now,
        bot_methods=await _bot_methods(session, handoff.bot_id),
        notify_users=notify_users,
        data=data,
    )
    _notify(session, fx, ids)


# --- opening ------------------------------------------------------------------------------------


async def open_handoff(
    conn: AsyncConnection,
    config: NectarBotsConfig,
    *,
    bot: dict[str, Any],
    conversation_id: uuid.UUID,
    decision: Decision,
    trigger_message_id: uuid.UUID | None,
    bot_draft: dict[str, Any] | None = None,
    opened_by: uuid.UUID | None = None,
    now: datetime | None = None,
    bot_methods: list[str] | None = None,
) -> dict[str, Any] | None:
    """Open a handoff in the caller's transaction. None if the conversation already has an
    open one (the database allows one, so concurrent triggers cannot open a storm)."""
    now = now or utcnow()
    context, summary = await snapshot(
        conn,
        bot=bot,
        conversation_id=conversation_id,
        trigger_message_id=trigger_message_id,
        reason=decision.reason.value,
        urgency=decision.urgency.value,
        evidence=decision.evidence,
        bot_draft=bot_draft,
        now=now,
    )
    handoff_id = new_id()
    row = handoff_row(
        config,
        handoff_id=handoff_id,
        bot_id=uuid.UUID(str(bot["id"])),
        conversation_id=conversation_id,
        decision=decision,
        context=context,
        summary=summary,
        trigger_message_id=trigger_message_id,
        opened_by=opened_by,
        now=now,
    )
    try:
        async with conn.begin_nested():
            await conn.execute(sa.insert(_H).values(**row))
    except IntegrityError:
        return None
    await conn.execute(sa.insert(_E).values(**created_event(row, now)))
    await conn.execute(
        sa.update(_CONV).where(_CONV.c.id == conversation_id).values(handled_by="human")
    )
    deliveries = await outbox.plan(
        conn,
        config,
        handoff_id=handoff_id,
        event=EventType.created,
        now=now,
        bot_methods=bot_methods,
    )
    return opened(row, deliveries)


def handoff_row(
    config: NectarBotsConfig,
    *,
    handoff_id: uuid.UUID,
    bot_id: uuid.UUID,
    conversation_id: uuid.UUID,
    decision: Decision,
    context: dict[str, Any],
    summary: str,
    trigger_message_id: uuid.UUID | None,
    opened_by: uuid.UUID | None,
    now: datetime,
) -> dict[str, Any]:
    """A new, pending handoff with its SLA targets, as a row."""
    sla = config.handoff.sla.for_urgency(decision.urgency.value)
    return {
        "id": handoff_id,
        "bot_id": bot_id,
        "conversation_id": conversation_id,
        "status": HandoffStatus.pending.value,
        "reason": decision.reason.value,
        "urgency": decision.urgency.value,
        "evidence": decision.evidence,
        "context": context,
        "summary": summary,
        "trigger_message_id": trigger_message_id,
        "opened_by_id": opened_by,
        "return_to_bot": True,
        "escalation_level": 0,
        "external_refs": {},
        "created_at": now,
        "updated_at": now,
        "accept_due_at": now + timedelta(minutes=sla.accept_minutes),
        "resolve_due_at": now + timedelta(minutes=sla.resolve_minutes),
    }


def created_event(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    return event_row(
        row["id"],
        "created",
        row["opened_by_id"],
        None,
        HandoffStatus.pending,
        now,
        {"reason": row["reason"], "urgency": row["urgency"]},
    )


def opened(row: dict[str, Any], deliveries: list[uuid.UUID]) -> dict[str, Any]:
    """What the chat response and the caller learn of a handoff just opened."""
    return {
        "id": row["id"],
        "status": row["status"],
        "reason": row["reason"],
        "urgency": row["urgency"],
        "deliveries": deliveries,
    }


def event_row(
    handoff_id: uuid.UUID,
    kind: str,
    actor_id: uuid.UUID | None,
    from_status: str | None,
    to_status: str | None,
    now: datetime,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "handoff_id": handoff_id,
        "kind": kind,
        "actor_id": actor_id,
        "from_status": str(from_status) if from_status else None,
        "to_status": str(to_status) if to_status else None,
        "detail": detail or {},
        "created_at": now,
    }


async def _event(
    conn: AsyncConnection,
    handoff_id: uuid.UUID,
    kind: str,
    actor_id: uuid.UUID | None,
    from_status: str | None,
    to_status: str | None,
    now: datetime,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        sa.insert(_E).values(
            **event_row(handoff_id, kind, actor_id, from_status, to_status, now, detail)
        )
    )


async def escalate_conversation(
    session: AsyncSession,
    fx: Effects,
    actor: User,
    conversation_id: uuid.UUID,
    urgency: Urgency | None,
    note: str | None,
) -> Handoff:
    """admin_override: an admin or agent hands a conversation to humans by hand."""
    if actor.role not in _WORKERS:
        raise Forbidden("only admins and agents can escalate a conversation")
    conv = await session.get(Conversation, conversation_id)
    if conv is None:
        from nectar.chat.exceptions import ConversationNotFound

        raise ConversationNotFound()
    bot = await session.get(NectarBot, conv.bot_id)
    assert bot is not None
    existing = await _open_for_conversation(session, conversation_id)
    if existing is not None:
        raise HandoffAlreadyOpen(existing.id)
    decision = Decision(
        Reason.admin_override,
        urgency or Urgency.medium,
        {"rule": "admin_override", "by": str(actor.id), "note": note or ""},
    )
    conn = await session.connection()
    opened = await open_handoff(
        conn,
        fx.config,
        bot={"id": bot.id, "name": bot.name},
        conversation_id=conversation_id,
        decision=decision,
        trigger_message_id=None,
        opened_by=actor.id,
        bot_methods=(bot.handoff_settings or {}).get("methods"),
    )
    if opened is None:
        existing = await _open_for_conversation(session, conversation_id)
        raise HandoffAlreadyOpen(existing.id if existing else "?")
    _notify(session, fx, opened["deliveries"])
    return await _get(session, opened["id"])


async def _open_for_conversation(
    session: AsyncSession, conversation_id: uuid.UUID
) -> Handoff | None:
    result = await session.exec(
        select(Handoff).where(
            Handoff.conversation_id == conversation_id, col(Handoff.status).in_(_OPEN)
        )
    )
    return result.first()


# --- reading ------------------------------------------------------------------------------------


async def _get(session: AsyncSession, handoff_id: uuid.UUID) -> Handoff:
    handoff = await session.get(Handoff, handoff_id, populate_existing=True)
    if handoff is None:
        raise HandoffNotFound()
    return handoff


async def _visible_bots(session: AsyncSession, actor: User) -> list[uuid.UUID] | None:
    """None = every bot (admins, agents); else the member's own bots."""
    if actor.role in _WORKERS:
        return None
    return list(await session.exec(select(NectarBot.id).where(NectarBot.owner_id == actor.id)))


async def get_handoff(session: AsyncSession, actor: User, handoff_id: uuid.UUID) -> Handoff:
    handoff = await _get(session, handoff_id)
    bots = await _visible_bots(session, actor)
    if bots is not None and handoff.bot_id not in bots:
        raise HandoffNotFound()
    return handoff


_URGENCY_RANK = sa.case(
    {"critical": 4, "high": 3, "medium": 2, "low": 1}, value=_H.c.urgency, else_=0
)


async def list_handoffs(
    session: AsyncSession,
    actor: User,
    page: PageParams,
    *,
    status: str | None,
    urgency: str | None,
    bot_id: uuid.UUID | None,
    assignee_id: uuid.UUID | None,
    reason: str | None,
) -> tuple[list[Handoff], Pagination]:
    """Most urgent first, then newest. ``status=active`` means not resolved or cancelled."""
    query = select(Handoff)
    if status == "active":
        query = query.where(col(Handoff.status).in_(_OPEN))
    elif status:
        query = query.where(Handoff.status == status)
    if urgency:
        query = query.where(Handoff.urgency == urgency)
    if bot_id:
        query = query.where(Handoff.bot_id == bot_id)
    if assignee_id:
        query = query.where(Handoff.assignee_id == assignee_id)
    if reason:
        query = query.where(Handoff.reason == reason)
    bots = await _visible_bots(session, actor)
    if bots is not None:
        query = query.where(col(Handoff.bot_id).in_(bots))
    total = (await session.exec(select(func.count()).select_from(query.subquery()))).one()
    rows = await session.exec(
        query.order_by(_URGENCY_RANK.desc(), col(Handoff.created_at).desc(), col(Handoff.id))
        .offset(page.offset)
        .limit(page.per_page)
    )
    return list(rows), page.result(total)


async def events(session: AsyncSession, handoff_id: uuid.UUID) -> list[HandoffEvent]:
    rows = await session.exec(
        select(HandoffEvent)
        .where(HandoffEvent.handoff_id == handoff_id)
        .order_by(col(HandoffEvent.created_at), col(HandoffEvent.id))
    )
    return list(rows)


async def conversation_messages(
    session: AsyncSession, conversation_id: uuid.UUID, after_seq: int = 0, limit: int = 500
) -> list[Message]:
    rows = await session.exec(
        select(Message)
        .where(Message.conversation_id == conversation_id, col(Message.seq) > after_seq)
        .order_by(col(Message.seq))
        .limit(limit)
    )
    return list(rows)


# --- working it ---------------------------------------------------------------------------------


def _display(user: User) -> str:
    """How notifications name a person: never by email (they may leave our system)."""
    if user.name:
        return user.name
    return f"an {user.role}" if user.role in ("admin", "agent") else "a user"


def _require_worker(actor: User) -> None:
    if actor.role not in _WORKERS:
        raise Forbidden("only agents and admins work handoffs")


def _require_holder(actor: User, handoff: Handoff) -> None:
    if actor.role != Role.admin.value and handoff.assignee_id != actor.id:
        raise Forbidden("only the assigned agent or an admin can do this")


async def _transition(
    session: AsyncSession,
    handoff: Handoff,
    allowed_from: tuple[HandoffStatus, ...],
    values: dict[str, Any],
    what: str,
) -> None:
    """Conditional UPDATE: succeeds only if the handoff is still in an allowed state."""
    result = await session.exec(
        sa.update(Handoff)
        .where(
            col(Handoff.id) == handoff.id,
            col(Handoff.status).in_([s.value for s in allowed_from]),
        )
        .values(**values)
    )
    if result.rowcount != 1:
        current = await _get(session, handoff.id)
        raise InvalidTransition(f"cannot {what} a handoff that is {current.status}")


async def assign(
    session: AsyncSession,
    fx: Effects,
    actor: User,
    handoff_id: uuid.UUID,
    agent_id: uuid.UUID | None,
) -> Handoff:
    """Accept (no agent_id, or your own) or delegate to another agent."""
    _require_worker(actor)
    handoff = await get_handoff(session, actor, handoff_id)
    target = actor
    if agent_id is not None and agent_id != actor.id:
        found = await session.get(User, agent_id)
        if found is None or not found.is_active or found.role not in _WORKERS:
            raise AgentNotFound()
        target = found
    now = utcnow()
    before = handoff.status
    if before == HandoffStatus.pending.value:
        await _transition(
            session,
            handoff,
            (HandoffStatus.pending,),
            {
                "status": HandoffStatus.assigned.value,
                "assignee_id": target.id,
                "assigned_at": now,
                "updated_at": now,
            },
            "accept",
        )
        kind = "assigned" if target.id == actor.id else "delegated"
        after = HandoffStatus.assigned.value
    elif before in (HandoffStatus.assigned.value, HandoffStatus.in_progress.value):
        if target.id == handoff.assignee_id:
            raise InvalidTransition("the handoff is already assigned to this agent")
        if agent_id is None and actor.role != Role.admin.value:
            # Accepting something another agent took first (typically a second earlier).
            raise InvalidTransition("cannot accept a handoff that is already assigned")
        _require_holder(actor, handoff)
        await _transition(
            session,
            handoff,
            (HandoffStatus.assigned, HandoffStatus.in_progress),
            {"assignee_id": target.id, "updated_at": now},
            "delegate",
        )
        kind, after = "delegated", before
    else:
        raise InvalidTransition(f"cannot assign a handoff that is {before}")
    conn = await session.connection()
    await _event(
        conn,
        handoff.id,
        kind,
        actor.id,
        before,
        after,
        now,
        {"assignee_id": str(target.id), "assignee_name": target.name or target.email},
    )
    # The new holder hears of it when someone else handed it to them.
    delegated_to = [target.id] if target.id != actor.id else None
    await _plan(
        session,
        fx,
        handoff,
        EventType.assigned,
        now,
        notify_users=delegated_to,
        data={"assignee_name": _display(target), "by": _display(actor)},
    )
    return await _get(session, handoff.id)


async def reply(
    session: AsyncSession,
    fx: Effects,
    actor: User,
    handoff_id: uuid.UUID,
    content: str,
) -> tuple[Handoff, Message]:
    """An agent's message to the user, in the user's conversation. Replying to a pending
    handoff accepts it."""
    _require_worker(actor)
    handoff = await get_handoff(session, actor, handoff_id)
    if handoff.status == HandoffStatus.pending.value:
        handoff = await assign(session, fx, actor, handoff_id, None)
    if handoff.status not in (HandoffStatus.assigned.value, HandoffStatus.in_progress.value):
        raise InvalidTransition(f"cannot reply to a handoff that is {handoff.status}")
    _require_holder(actor, handoff)
    now = utcnow()
    message = await append_message(
        session, handoff.conversation_id, MessageRole.agent, content, now, actor.id, fx.bus
    )
    conn = await session.connection()
    if handoff.status == HandoffStatus.assigned.value:
        await _transition(
            session,
            handoff,
            (HandoffStatus.assigned,),
            {
                "status": HandoffStatus.in_progress.value,
                "first_response_at": now,
                "updated_at": now,
            },
            "reply to",
        )
        await _event(
            conn,
            handoff.id,
            "replied",
            actor.id,
            HandoffStatus.assigned,
            HandoffStatus.in_progress,
            now,
            {"message_id": str(message.id)},
        )
    else:
        await _event(
            conn, handoff.id, "replied", actor.id, None, None, now, {"message_id": str(message.id)}
        )
    return await _get(session, handoff.id), message


async def append_message(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    role: MessageRole,
    content: str,
    now: datetime,
    author_id: uuid.UUID | None = None,
    bus: EventBus | None = None,
) -> Message:
    """Add a message at the end of a conversation (the counter is bumped atomically); live
    subscribers hear of it once it is committed."""
    conn = await session.connection()
    seq = (
        await conn.execute(
            sa.update(_CONV)
            .where(_CONV.c.id == conversation_id)
            .values(message_count=_CONV.c.message_count + 1, last_message_at=now)
            .returning(_CONV.c.message_count)
        )
    ).scalar_one()
    message = Message(
        conversation_id=conversation_id,
        seq=seq,
        role=role.value,
        content=content,
        author_id=author_id,
        created_at=now,
    )
    session.add(message)
    await session.flush()
    if bus is not None:
        payload = {"type": "messages", "messages": [message_payload(message.model_dump())]}
        channel, events = conversation_channel(conversation_id), bus
        after_commit(session, lambda: events.publish(channel, payload))
    return message


async def resolve(
    session: AsyncSession,
    fx: Effects,
    actor: User,
    handoff_id: uuid.UUID,
    notes: str | None,
    return_to_bot: bool,
) -> Handoff:
    _require_worker(actor)
    handoff = await get_handoff(session, actor, handoff_id)
    if handoff.status not in _OPEN:
        raise InvalidTransition(f"cannot resolve a handoff that is {handoff.status}")
    if handoff.status != HandoffStatus.pending.value:
        _require_holder(actor, handoff)
    now = utcnow()
    before = handoff.status
    values: dict[str, Any] = {
        "status": HandoffStatus.resolved.value,
        "resolved_at": now,
        "resolution_notes": notes,
        "return_to_bot": return_to_bot,
        "updated_at": now,
    }
    if handoff.assignee_id is None:
        values.update(assignee_id=actor.id, assigned_at=now)
    await _transition(session, handoff, OPEN_STATUSES, values, "resolve")
    await _close_conversation(
        session,
        handoff,
        "bot" if return_to_bot else "closed",
        now,
        fx.config.handoff.messages.resolved_notice,
        fx.bus,
    )
    conn = await session.connection()
    await _event(
        conn,
        handoff.id,
        "resolved",
        actor.id,
        before,
        HandoffStatus.resolved,
        now,
        {"return_to_bot": return_to_bot, "notes": notes or ""},
    )
    await _plan(session, fx, handoff, EventType.resolved, now, data={"by": _display(actor)})
    return await _get(session, handoff.id)


async def cancel(
    session: AsyncSession, fx: Effects, actor: User | None, handoff_id: uuid.UUID, why: str | None
) -> Handoff:
    """Closed unhandled: an admin (or the assignee) closes it, or the user left."""
    if actor is not None:
        _require_worker(actor)
        handoff = await get_handoff(session, actor, handoff_id)
        if handoff.status != HandoffStatus.pending.value:
            _require_holder(actor, handoff)
    else:
        handoff = await _get(session, handoff_id)
    if handoff.status not in _OPEN:
        raise InvalidTransition(f"cannot cancel a handoff that is {handoff.status}")
    now = utcnow()
    before = handoff.status
    await _transition(
        session,
        handoff,
        OPEN_STATUSES,
        {"status": HandoffStatus.cancelled.value, "cancelled_at": now, "updated_at": now},
        "cancel",
    )
    await _close_conversation(session, handoff, "bot", now, None)
    conn = await session.connection()
    await _event(
        conn,
        handoff.id,
        "cancelled",
        actor.id if actor else None,
        before,
        HandoffStatus.cancelled,
        now,
        {"why": why or ("user left" if actor is None else "")},
    )
    await _plan(session, fx, handoff, EventType.cancelled, now, data={"why": why or ""})
    return await _get(session, handoff.id)


async def _close_conversation(
    session: AsyncSession,
    handoff: Handoff,
    handled_by: str,
    now: datetime,
    notice: str | None,
    bus: EventBus | None = None,
) -> None:
    conn = await session.connection()
    await conn.execute(
        sa.update(_CONV).where(_CONV.c.id == handoff.conversation_id).values(handled_by=handled_by)
    )
    if notice:
        await append_message(
            session, handoff.conversation_id, MessageRole.system, notice, now, None, bus
        )
    if handled_by == "bot":
        # The bot starts afresh: length and duration triggers count from here.
        await conn.execute(
            sa.update(_CONV)
            .where(_CONV.c.id == handoff.conversation_id)
            .values(bot_since_seq=_CONV.c.message_count, bot_since_at=now)
        )


def parse_status_filter(status: str | None) -> str | None:
    allowed = {"active", *(s.value for s in HandoffStatus)}
    if status is not None and status not in allowed:
        raise BadRequest(f"status must be one of {', '.join(sorted(allowed))}")
    return status


def parse_assignee(value: str | None, actor: User) -> uuid.UUID | None:
    if value is None:
        return None
    if value == "me":
        return actor.id
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadRequest("assignee_id must be a user id or 'me'") from None


async def detail(
    session: AsyncSession, actor: User, handoff_id: uuid.UUID
) -> tuple[Handoff, list[HandoffEvent], list[Message]]:
    handoff = await get_handoff(session, actor, handoff_id)
    return (
        handoff,
        await events(session, handoff.id),
        await conversation_messages(session, handoff.conversation_id),
    )


async def reply_with(
    session: AsyncSession,
    fx: Effects,
    actor: User,
    handoff_id: uuid.UUID,
    data: ReplyRequest,
) -> tuple[Handoff, Message]:
    """Reply with text, or with a response template filled in for this conversation."""
    content = data.content
    if data.template_id is not None:
        template = await templates.get(session, actor, data.template_id)
        handoff = await get_handoff(session, actor, handoff_id)
        conv = await session.get(Conversation, handoff.conversation_id)
        bot = await session.get(NectarBot, handoff.bot_id)
        values = {
            "user_name": (conv.user_name if conv else None) or "there",
            "user_email": (conv.user_email if conv else None) or "",
            "bot_name": bot.name if bot else "",
            "agent_name": actor.name or actor.email,
            **(data.variables or {}),
        }
        content = templates.render(template.body, values)
    assert content is not None
    return await reply(session, fx, actor, handoff_id, content)


async def bot_for_settings(session: AsyncSession, actor: User, bot_id: uuid.UUID) -> NectarBot:
    from nectar.bots import service as bots

    return await bots.get_bot(session, actor, bot_id)
