"""The chat turn: the hot path.

A turn is admitted (the bot's key from a short-lived cache, both rate-limit windows in one
Redis script), reads the conversation and searches the Honey Jars without a transaction,
asks the responder outside any transaction (a model call may take seconds), then stores the
user's message, the reply and the usage row in one write (one statement on PostgreSQL; see
``store``). Message order comes from an atomic counter on the conversation, so concurrent
turns of one conversation never collide. A turn that opens a handoff writes the handoff, its
context and its outbox in the same transaction as the messages.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from nectar.chat.directory import BotSnapshot, generation_key
from nectar.chat.exceptions import (
    BotInactive,
    BotUnavailable,
    ConversationNotFound,
    InvalidApiKey,
    MessageNotFound,
)
from nectar.chat.models import Conversation, Message, MessageRole, Usage
from nectar.chat.responders.base import Answer, Question, Responder
from nectar.chat.schemas import (
    ChatRequest,
    ChatResponse,
    HandoffRef,
    MessageList,
    MessageOut,
    SourceOut,
)
from nectar.chat.store import (
    NOTICE_KIND,
    AssigneeNotice,
    NewConversation,
    NewMessage,
    Opening,
    TurnContext,
    TurnWrite,
    Written,
)
from nectar.chat.stream import MESSAGE_COLUMNS, publish_messages
from nectar.db import new_id, utcnow
from nectar.deps import Services
from nectar.errors import TooManyRequests
from nectar.events import user_channel
from nectar.handoffs import bot_settings
from nectar.handoffs.detection.base import Decision, TriggerSettings, TurnFacts
from nectar.handoffs.detection.detector import detect
from nectar.notifications.channels.text import one_line
from nectar.notifications.service import created_event

HOUR, DAY = 3600, 86400
RELAY_BODY_CHARS = 500

_CONV = Conversation.__table__  # type: ignore[attr-defined]
_MSG = Message.__table__  # type: ignore[attr-defined]
_USAGE = Usage.__table__  # type: ignore[attr-defined]


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


def _triggers(services: Services, bot: BotSnapshot) -> TriggerSettings:
    return bot_settings.effective(
        services.settings.nectar_bots,
        handoff_enabled=bot.handoff_enabled,
        keywords=bot.handoff_keywords,
        confidence_threshold=bot.handoff_confidence_threshold,
        max_conversation_length=bot.max_conversation_length,
        settings=bot.handoff_settings,
    )


def _new_conversation(bot: BotSnapshot, request: ChatRequest, origin: str) -> NewConversation:
    user = request.user
    return NewConversation(
        bot_id=bot.id,
        user_ref=user.id if user else None,
        user_name=user.name if user else None,
        user_email=user.email if user else None,
        metadata=request.metadata or {},
        origin=origin,
    )


async def handle_turn(
    services: Services,
    bot: BotSnapshot,
    request: ChatRequest,
    responder: Responder,
    origin: str = "api",
) -> ChatResponse:
    """Store the user's message and answer it, hand it to a human, or relay it to the human
    who already holds the conversation."""
    now = utcnow()
    # A responder that only computes lets the turn keep one database connection from its
    # read to its write; one that calls out (a model API) must not hold it meanwhile.
    async with services.turns.turn(hold=responder.local):
        turn = await _answer_and_store(services, bot, request, responder, origin, now)
    ctx, messages, written, answer = turn.ctx, turn.messages, turn.written, turn.answer
    first_seq, handoff = written.first_seq, written.open_handoff
    if not ctx.is_new:
        # Nobody can follow a conversation whose id this response is the first to tell.
        await publish_messages(services, ctx.conversation_id, _rows(messages, first_seq, now))
    if handoff and handoff.get("deliveries"):
        await services.queue.enqueue(handoff["deliveries"])
    if written.notified is not None:
        note = written.notified
        await services.events.publish(user_channel(note["user_id"]), created_event(note))
    bot_answered = not turn.handed_off and answer is not None
    return ChatResponse(
        conversation_id=ctx.conversation_id,
        message_id=messages[-1].id,
        reply=messages[1].content if len(messages) > 1 else None,
        confidence=answer.confidence if answer else None,
        handled_by="bot" if bot_answered else "human",
        sources=[SourceOut.model_validate(s) for s in turn.sources] if not turn.handed_off else [],
        handoff=HandoffRef.model_validate(handoff) if handoff else None,
    )


@dataclass(frozen=True, slots=True)
class _Stored:
    ctx: TurnContext
    answer: Answer | None
    handed_off: bool
    sources: list[dict[str, Any]]
    messages: list[NewMessage]
    written: Written


async def _answer_and_store(
    services: Services,
    bot: BotSnapshot,
    request: ChatRequest,
    responder: Responder,
    origin: str,
    now: datetime,
) -> _Stored:
    """Read, answer (or decide on a handoff) and store: the part of the turn that may keep
    one database connection throughout."""
    started = time.perf_counter()
    config = services.settings.nectar_bots
    ctx, hits = await services.turns.read(
        bot.id,
        request.conversation_id,
        origin == "public",
        bot.jar_ids,
        request.message,
        config.responder.passages,
        now,
    )
    answer: Answer | None = None
    decision: Decision | None = None
    if ctx.handled_by == "bot":
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
    new = _new_conversation(bot, request, origin) if ctx.is_new else None
    user = NewMessage(new_id(), MessageRole.user.value, request.message)
    if decision is not None:
        notice = NewMessage(
            new_id(), MessageRole.system.value, config.handoff.messages.handoff_notice
        )
        messages = [user, notice]
        written = await services.turns.hand_off(
            _turn(ctx, bot, new, messages, now, answer, len(hits), elapsed_ms),
            Opening(
                config=config,
                bot={"id": str(bot.id), "name": bot.name, "jar_ids": bot.jar_ids},
                decision=decision,
                draft=_draft(answer, sources),
                bot_methods=bot.handoff_settings.get("methods"),
            ),
        )
    else:
        if answer is not None:
            reply = NewMessage(
                new_id(),
                MessageRole.bot.value,
                answer.text,
                answer.confidence,
                sources,
                elapsed_ms,
            )
            messages = [user, reply]
        else:  # a human holds the conversation: the message waits for them
            messages = [user]
        written = await services.turns.write(
            _turn(ctx, bot, new, messages, now, answer, len(hits), elapsed_ms)
        )
    return _Stored(ctx, answer, decision is not None, sources, messages, written)


def _turn(
    ctx: TurnContext,
    bot: BotSnapshot,
    new: NewConversation | None,
    messages: list[NewMessage],
    now: datetime,
    answer: Answer | None,
    matches: int,
    elapsed_ms: int,
) -> TurnWrite:
    # The bot's reply when it answers; the handoff notice, or the relayed message, otherwise.
    bot_answered = answer is not None and messages[-1].role == MessageRole.bot.value
    return TurnWrite(
        conversation_id=ctx.conversation_id,
        new=new,
        messages=messages,
        now=now,
        bot_id=bot.id,
        usage_message_id=messages[-1].id,
        response_time_ms=elapsed_ms,
        confidence=answer.confidence if answer else None,
        knowledge_matches=matches,
        handled_by="bot" if bot_answered else "human",
        relay=_relay_notice(ctx, messages[0]) if answer is None else None,
    )


def _relay_notice(ctx: TurnContext, message: NewMessage) -> AssigneeNotice:
    """What the agent holding the conversation reads in their inbox."""
    who = ctx.user_name or "the user"
    return AssigneeNotice(
        id=new_id(),
        title=one_line(f"New message from {who}"),
        body=message.content[:RELAY_BODY_CHARS],
        data={
            "event": NOTICE_KIND,
            "conversation_id": str(ctx.conversation_id),
            "message_id": str(message.id),
        },
    )


def _rows(messages: list[NewMessage], first_seq: int, now: datetime) -> list[dict[str, Any]]:
    """The stored messages as the live stream shows them."""
    return [
        {
            "id": m.id,
            "seq": first_seq + i,
            "role": m.role,
            "content": m.content,
            "confidence": m.confidence,
            "sources": m.sources,
            "created_at": now,
        }
        for i, m in enumerate(messages)
    ]


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
