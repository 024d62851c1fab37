"""The chat turn: the hot path. A few Core statements per turn, no ORM unit of work.

A turn reads (conversation, recent history, retrieval) in one short transaction, asks the
responder outside any transaction (a model call may take seconds), then writes the user
message, the reply and the usage row in a second one. Message order comes from an atomic
counter on the conversation, so concurrent turns of one conversation never collide.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from nectar.chat.directory import BotSnapshot, generation_key
from nectar.chat.exceptions import (
    BotInactive,
    BotUnavailable,
    ConversationClosed,
    ConversationNotFound,
    InvalidApiKey,
    MessageNotFound,
)
from nectar.chat.models import Conversation, Message, MessageRole, Usage
from nectar.chat.responders.base import Answer, HistoryItem, Question, Responder
from nectar.chat.schemas import (
    ChatRequest,
    ChatResponse,
    HandoffRef,
    MessageList,
    MessageOut,
    SourceOut,
)
from nectar.chat.stream import MESSAGE_COLUMNS, publish_messages
from nectar.db import new_id, utcnow
from nectar.deps import Services
from nectar.errors import TooManyRequests
from nectar.handoffs import bot_settings
from nectar.handoffs import service as handoff_service
from nectar.handoffs.detection.base import Decision, TriggerSettings, TurnFacts
from nectar.handoffs.detection.detector import detect
from nectar.handoffs.models import Handoff
from nectar.knowledge.search import search

HISTORY_TURNS = 10
HOUR, DAY = 3600, 86400

_CONV = Conversation.__table__  # type: ignore[attr-defined]
_MSG = Message.__table__  # type: ignore[attr-defined]
_USAGE = Usage.__table__  # type: ignore[attr-defined]
_HANDOFF = Handoff.__table__  # type: ignore[attr-defined]


# --- who is calling, and may they -------------------------------------------------------------


def _usable(bot: BotSnapshot) -> BotSnapshot:
    if bot.status == "inactive":
        raise BotInactive()
    if bot.status == "maintenance":
        raise BotUnavailable()
    return bot


@dataclass(frozen=True, slots=True)
class Limits:
    limit: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


async def admit_key(
    services: Services, bot_id: uuid.UUID, api_key: str | None
) -> tuple[BotSnapshot, Limits]:
    """Authenticate a bot API key and count the request against the bot's limits."""
    if not api_key:
        raise InvalidApiKey()
    key = api_key

    async def find() -> BotSnapshot:
        bot = await services.bots.by_key(key)
        if bot is None or bot.id != bot_id:
            raise InvalidApiKey()
        return _usable(bot)

    return await _admit(services, find, lambda bot: f"chat:{bot.id}")


async def admit_public(services: Services, slug: str, client_ip: str) -> tuple[BotSnapshot, Limits]:
    """A public bot by slug; its limits apply per client IP."""

    async def find() -> BotSnapshot:
        return await public_info(services, slug)

    return await _admit(services, find, lambda bot: f"chat:{bot.id}:ip:{client_ip}")


async def find_public(services: Services, slug: str) -> BotSnapshot:
    from nectar.bots.exceptions import BotNotFound

    bot = await services.bots.by_slug(slug)
    if bot is None or not bot.is_public:
        raise BotNotFound()
    return bot


async def authenticate_key(
    services: Services, bot_id: uuid.UUID, api_key: str | None
) -> BotSnapshot:
    """For reads: the key must be this bot's; no rate limit is counted."""
    bot = await services.bots.by_key(api_key) if api_key else None
    if bot is None or bot.id != bot_id:
        raise InvalidApiKey()
    return bot


async def public_info(services: Services, slug: str) -> BotSnapshot:
    return _usable(await find_public(services, slug))


async def _admit(
    services: Services,
    find: Callable[[], Awaitable[BotSnapshot]],
    scope: Callable[[BotSnapshot], str],
) -> tuple[BotSnapshot, Limits]:
    bot = await find()
    windows, generation = await services.limiter.hit_many(
        [
            (f"{scope(bot)}:h", bot.rate_limit_per_hour, HOUR),
            (f"{scope(bot)}:d", bot.rate_limit_per_day, DAY),
        ],
        read=generation_key(bot.id),
    )
    if generation != bot.generation:
        # Changed on another replica since we cached it (new key, settings, deleted): reload.
        services.bots.forget(bot.id)
        bot = await find()
    hour, day = windows
    exceeded = [w for w in windows if w.exceeded]
    if exceeded:
        await _record_refusal(services.engine, bot.id)
        retry = max(w.reset_in for w in exceeded)
        which = "hourly" if hour.exceeded else "daily"
        raise TooManyRequests(
            f"this bot's {which} message limit is reached; retry in {retry} s",
            retry_after=retry,
            headers=Limits(exceeded[0].limit, 0, retry).headers(),
        )
    tightest = min((hour, day), key=lambda w: (w.remaining, w.reset_in))
    return bot, Limits(tightest.limit, tightest.remaining, tightest.reset_in)


async def _record_refusal(engine: AsyncEngine, bot_id: uuid.UUID) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(_USAGE).values(
                id=new_id(),
                bot_id=bot_id,
                rate_limit_hit=True,
                knowledge_matches=0,
                created_at=utcnow(),
            )
        )


# --- the turn ---------------------------------------------------------------------------------


@dataclass
class _Context:
    conversation_id: uuid.UUID
    is_new: bool
    handled_by: str
    message_count: int
    started_at: datetime
    history: list[HistoryItem]
    # Where a human last handed the conversation back (0 if never), and the messages since:
    # what the length, duration and error-pattern triggers look at.
    bot_since_seq: int
    recent: list[HistoryItem]


async def _load(
    conn: AsyncConnection, bot: BotSnapshot, request: ChatRequest, now: datetime, origin: str
) -> _Context:
    if request.conversation_id is None:
        return _Context(new_id(), True, "bot", 0, now, [], 0, [])
    # One query: the conversation (which must be this bot's) with its latest messages.
    rows = list(
        await conn.execute(
            sa.select(
                _CONV.c.handled_by,
                _CONV.c.message_count,
                _CONV.c.created_at,
                _CONV.c.bot_since_seq,
                _CONV.c.bot_since_at,
                _MSG.c.seq,
                _MSG.c.role,
                _MSG.c.content,
                _MSG.c.confidence,
            )
            .select_from(_CONV.outerjoin(_MSG, _MSG.c.conversation_id == _CONV.c.id))
            .where(
                _CONV.c.id == request.conversation_id,
                _CONV.c.bot_id == bot.id,
                # The keyless endpoint continues only conversations it started.
                _CONV.c.origin == "public" if origin == "public" else sa.true(),
            )
            .order_by(_MSG.c.seq.desc())
            .limit(HISTORY_TURNS)
        )
    )
    if not rows:
        raise ConversationNotFound()
    if rows[0].handled_by == "closed":
        raise ConversationClosed()
    first = rows[0]
    ordered = [r for r in rows if r.role][::-1]
    return _Context(
        request.conversation_id,
        False,
        first.handled_by,
        first.message_count,
        first.bot_since_at or first.created_at,
        [HistoryItem(r.role, r.content, r.confidence) for r in ordered],
        first.bot_since_seq,
        [
            HistoryItem(r.role, r.content, r.confidence)
            for r in ordered
            if r.seq > first.bot_since_seq
        ],
    )


@asynccontextmanager
async def _reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """Reads without a transaction on PostgreSQL: no BEGIN and ROLLBACK round trips."""
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


def _retrieval_text(message: str, history: list[HistoryItem]) -> str:
    """The question plus the previous user message, so a follow-up ("and on Free?") finds
    the article the conversation is about."""
    previous = next((h.content for h in reversed(history) if h.role == "user"), "")
    return f"{message} {previous}".strip()


def _triggers(services: Services, bot: BotSnapshot) -> TriggerSettings:
    return bot_settings.effective(
        services.settings.nectar_bots,
        handoff_enabled=bot.handoff_enabled,
        keywords=bot.handoff_keywords,
        confidence_threshold=bot.handoff_confidence_threshold,
        max_conversation_length=bot.max_conversation_length,
        settings=bot.handoff_settings,
    )


def _message_row(
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    seq: int,
    role: MessageRole,
    content: str,
    now: datetime,
    answer: Answer | None = None,
    sources: list[dict[str, Any]] | None = None,
    elapsed_ms: int | None = None,
) -> dict[str, Any]:
    return {
        "id": message_id,
        "conversation_id": conversation_id,
        "seq": seq,
        "role": role.value,
        "content": content,
        "confidence": answer.confidence if answer else None,
        "sources": sources,
        "response_time_ms": elapsed_ms,
        "author_id": None,
        "created_at": now,
    }


async def handle_turn(
    services: Services,
    bot: BotSnapshot,
    request: ChatRequest,
    responder: Responder,
    origin: str = "api",
) -> ChatResponse:
    """Store the user's message and answer it, hand it to a human, or relay it to the human
    who already holds the conversation."""
    started = time.perf_counter()
    now = utcnow()
    config = services.settings.nectar_bots
    async with _reading(services.engine) as conn:
        ctx = await _load(conn, bot, request, now, origin)
        bot_holds = ctx.handled_by == "bot"
        hits = (
            await search(
                conn,
                list(bot.jar_ids),
                _retrieval_text(request.message, ctx.history),
                config.responder.passages,
            )
            if bot_holds
            else []
        )
    answer: Answer | None = None
    decision: Decision | None = None
    if bot_holds:
        answer = await responder.answer(
            Question(
                bot_name=bot.name,
                system_prompt=bot.system_prompt,
                message=request.message,
                history=ctx.history,
                passages=hits,
            )
        )
        triggers = _triggers(services, bot)
        if triggers.enabled:
            decision = detect(
                TurnFacts(
                    message=request.message,
                    history=ctx.recent,
                    answer=answer,
                    stored_messages=ctx.message_count - ctx.bot_since_seq,
                    conversation_started_at=ctx.started_at,
                    now=now,
                ),
                triggers,
            )
    elapsed_ms = int((time.perf_counter() - started) * 1000)
    sources = [
        {
            "document_id": str(s.document_id),
            "title": s.title,
            "heading": s.heading,
            "score": s.score,
        }
        for s in (answer.sources if answer else [])
    ]
    user_id, reply_id = new_id(), new_id()
    reply_text: str | None = None
    handoff: dict[str, Any] | None = None
    async with services.engine.begin() as conn:
        # The user's message, plus the bot's reply or the handoff notice.
        added = 1 if answer is None else 2
        first_seq = await _reserve(conn, ctx, bot, request, added, now, origin)
        rows = [
            _message_row(
                ctx.conversation_id, user_id, first_seq, MessageRole.user, request.message, now
            )
        ]
        if decision is None and answer is not None:
            reply_text = answer.text
            rows.append(
                _message_row(
                    ctx.conversation_id,
                    reply_id,
                    first_seq + 1,
                    MessageRole.bot,
                    answer.text,
                    now,
                    answer,
                    sources,
                    elapsed_ms,
                )
            )
            await conn.execute(sa.insert(_MSG), rows)
        elif decision is not None:
            # The user's message first: the handoff's context snapshot includes it.
            await conn.execute(sa.insert(_MSG), rows)
            handoff = await handoff_service.open_handoff(
                conn,
                config,
                bot={"id": str(bot.id), "name": bot.name, "jar_ids": bot.jar_ids},
                conversation_id=ctx.conversation_id,
                decision=decision,
                trigger_message_id=user_id,
                bot_draft=_draft(answer, sources),
                now=now,
                bot_methods=bot.handoff_settings.get("methods"),
            )
            if handoff is None:  # another turn opened one a moment ago: relay instead
                handoff = await _open_handoff_of(conn, ctx.conversation_id)
            reply_text = config.handoff.messages.handoff_notice
            notice = _message_row(
                ctx.conversation_id, reply_id, first_seq + 1, MessageRole.system, reply_text, now
            )
            await conn.execute(sa.insert(_MSG), [notice])
            rows.append(notice)
        else:  # a human holds the conversation: the message waits for them
            await conn.execute(sa.insert(_MSG), rows)
            handoff = await _open_handoff_of(conn, ctx.conversation_id)
        last_id = user_id if added == 1 else reply_id
        handled_by: Literal["bot", "human"] = (
            "bot" if decision is None and answer is not None else "human"
        )
        await conn.execute(
            sa.insert(_USAGE).values(
                id=new_id(),
                bot_id=bot.id,
                conversation_id=ctx.conversation_id,
                message_id=last_id,
                response_time_ms=elapsed_ms,
                confidence=answer.confidence if answer else None,
                knowledge_matches=len(hits),
                rate_limit_hit=False,
                handled_by=handled_by,
                created_at=now,
            )
        )
    await publish_messages(services, ctx.conversation_id, rows)
    if handoff and handoff.get("deliveries"):
        await services.queue.enqueue(handoff["deliveries"])
    return ChatResponse(
        conversation_id=ctx.conversation_id,
        message_id=last_id,
        reply=reply_text,
        confidence=answer.confidence if answer else None,
        handled_by=handled_by,
        sources=[SourceOut.model_validate(s) for s in sources] if decision is None else [],
        handoff=HandoffRef.model_validate(handoff) if handoff else None,
    )


def _draft(answer: Answer | None, sources: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The answer the bot would have given, kept for the agent instead of shown to the user."""
    if answer is None:
        return None
    return {
        "text": answer.text,
        "confidence": answer.confidence,
        "sources": sources,
        "error": answer.error,
    }


async def _reserve(
    conn: AsyncConnection,
    ctx: _Context,
    bot: BotSnapshot,
    request: ChatRequest,
    added: int,
    now: datetime,
    origin: str,
) -> int:
    """Create the conversation, or bump its message counter; returns the first new seq."""
    if ctx.is_new:
        await conn.execute(
            sa.insert(_CONV).values(**_new_conversation(ctx, bot, request, added, now, origin))
        )
        return 1
    count = (
        await conn.execute(
            sa.update(_CONV)
            .where(_CONV.c.id == ctx.conversation_id)
            .values(message_count=_CONV.c.message_count + added, last_message_at=now)
            .returning(_CONV.c.message_count)
        )
    ).scalar_one_or_none()
    if count is None:  # deleted between the two transactions
        raise ConversationNotFound()
    return int(count) - added + 1


async def _open_handoff_of(
    conn: AsyncConnection, conversation_id: uuid.UUID
) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                sa.select(_HANDOFF.c.id, _HANDOFF.c.status, _HANDOFF.c.reason, _HANDOFF.c.urgency)
                .where(
                    _HANDOFF.c.conversation_id == conversation_id,
                    _HANDOFF.c.status.in_(["pending", "assigned", "in_progress"]),
                )
                .limit(1)
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def _new_conversation(
    ctx: _Context, bot: BotSnapshot, request: ChatRequest, added: int, now: Any, origin: str
) -> dict[str, Any]:
    user = request.user
    return {
        "id": ctx.conversation_id,
        "bot_id": bot.id,
        "user_ref": user.id if user else None,
        "user_name": user.name if user else None,
        "user_email": user.email if user else None,
        "metadata": request.metadata or {},
        "message_count": added,
        "handled_by": "bot",
        "origin": origin,
        "created_at": now,
        "last_message_at": now,
    }


# --- reading a conversation back ----------------------------------------------------------------


def _owned(bot: BotSnapshot, conversation_id: uuid.UUID, public: bool) -> sa.Select[Any]:
    query = sa.select(_CONV.c.id).where(_CONV.c.id == conversation_id, _CONV.c.bot_id == bot.id)
    return query.where(_CONV.c.origin == "public") if public else query


async def check_conversation(
    engine: AsyncEngine, bot: BotSnapshot, conversation_id: uuid.UUID, public: bool = False
) -> None:
    """The conversation is this bot's (and, for the public endpoints, a public one)."""
    async with engine.connect() as conn:
        found = (await conn.execute(_owned(bot, conversation_id, public))).first()
    if found is None:
        raise ConversationNotFound()


async def list_messages(
    engine: AsyncEngine,
    bot: BotSnapshot,
    conversation_id: uuid.UUID,
    after: uuid.UUID | None,
    limit: int,
    public: bool = False,
) -> MessageList:
    async with engine.connect() as conn:
        if (await conn.execute(_owned(bot, conversation_id, public))).first() is None:
            raise ConversationNotFound()
        query = sa.select(*MESSAGE_COLUMNS).where(_MSG.c.conversation_id == conversation_id)
        if after is not None:
            seq = (
                await conn.execute(
                    sa.select(_MSG.c.seq).where(
                        _MSG.c.id == after, _MSG.c.conversation_id == conversation_id
                    )
                )
            ).scalar_one_or_none()
            if seq is None:
                raise MessageNotFound()
            query = query.where(_MSG.c.seq > seq)
        rows = list(await conn.execute(query.order_by(_MSG.c.seq).limit(limit + 1)))
    return MessageList(
        conversation_id=conversation_id,
        messages=[MessageOut.model_validate(dict(r._mapping)) for r in rows[:limit]],
        has_more=len(rows) > limit,
    )
