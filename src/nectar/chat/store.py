"""Where a chat turn reads and writes.

A turn reads the conversation with its recent history and searches the bot's Honey Jars
(one connection, no transaction), then, when the bot answers or a human already holds the
conversation, writes the conversation's counter, the new messages and the usage row at once.
Two stores behind one interface:

- ``PgTurnStore`` (PostgreSQL): fixed SQL on a raw asyncpg pool, prepared once per
  connection. Its write is a single statement (data-modifying CTEs), so a turn the bot
  answers costs at most three round trips and no BEGIN/COMMIT; the turn that opens a
  handoff then reads what its context snapshot needs and stores everything in one statement
  guarded by the conversation's message counter (read and store again if another turn came
  in between). This is the hot path of the service; SQLAlchemy's
  statement building, compilation and result processing cost more CPU than the whole turn
  may spend.
- ``SqlTurnStore`` (SQLite, or any engine): the same operations as SQLAlchemy Core
  statements in one transaction (the handoff through ``handoffs.service.open_handoff``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from nectar.chat.exceptions import ConversationClosed, ConversationNotFound
from nectar.chat.models import Conversation, Message, Usage
from nectar.chat.responders.base import HistoryItem
from nectar.config import NectarBotsConfig
from nectar.db import new_id
from nectar.errors import Overloaded
from nectar.handoffs import context as handoff_context
from nectar.handoffs import service as handoff_service
from nectar.handoffs.context import MAX_CONTEXT_MESSAGES
from nectar.handoffs.detection.base import Decision
from nectar.handoffs.models import Handoff
from nectar.knowledge.search import POSTGRES_SEARCH, Hit, hit_from_row, pg_query, search
from nectar.notifications import outbox
from nectar.notifications.channels.base import EventType
from nectar.notifications.models import Notification

log = logging.getLogger(__name__)

HISTORY_TURNS = 10
CLOSE_SECONDS = 5.0
CONNECT_SECONDS = 10.0
OPEN_HANDOFF = ("pending", "assigned", "in_progress")

_CONV = Conversation.__table__  # type: ignore[attr-defined]
_MSG = Message.__table__  # type: ignore[attr-defined]
_USAGE = Usage.__table__  # type: ignore[attr-defined]
_HANDOFF = Handoff.__table__  # type: ignore[attr-defined]
_NOTE = Notification.__table__  # type: ignore[attr-defined]


@dataclass
class TurnContext:
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
    # The embedding application's name for its user, if it gave one.
    user_name: str | None = None


@dataclass(frozen=True, slots=True)
class NewMessage:
    id: uuid.UUID
    role: str
    content: str
    confidence: float | None = None
    sources: list[dict[str, Any]] | None = None
    response_time_ms: int | None = None


@dataclass(frozen=True, slots=True)
class NewConversation:
    bot_id: uuid.UUID
    user_ref: str | None
    user_name: str | None
    user_email: str | None
    metadata: dict[str, Any]
    origin: str


@dataclass(slots=True)
class TurnWrite:
    """What a turn the bot answers, or a human holds, stores."""

    conversation_id: uuid.UUID
    # Set when the turn opens the conversation.
    new: NewConversation | None
    messages: list[NewMessage]
    now: datetime
    bot_id: uuid.UUID
    usage_message_id: uuid.UUID
    response_time_ms: int
    confidence: float | None
    knowledge_matches: int
    handled_by: str
    # A message relayed to the human holding the conversation: the turn returns the open
    # handoff, and tells its assignee in-app.
    relay: AssigneeNotice | None = None


@dataclass(frozen=True, slots=True)
class AssigneeNotice:
    """The in-app notification an assignee gets when the user writes while they hold the
    conversation. One unread at a time per handoff: further messages do not pile up."""

    id: uuid.UUID
    title: str
    body: str
    data: dict[str, Any]


NOTICE_KIND = "handoff.message"


@dataclass(slots=True)
class Written:
    first_seq: int
    # The conversation's open handoff: the one this turn opened (with "deliveries", the
    # outbox ids to enqueue), or the one already holding it.
    open_handoff: dict[str, Any] | None = field(default=None)
    # The in-app notification its assignee got (a relayed message), to announce live.
    notified: dict[str, Any] | None = field(default=None)


@dataclass(frozen=True, slots=True)
class Opening:
    """The handoff a turn opens. The turn's messages are the user's and the notice."""

    config: NectarBotsConfig
    bot: dict[str, Any]
    decision: Decision
    draft: dict[str, Any] | None
    bot_methods: list[str] | None


class TurnStore(Protocol):
    async def read(
        self,
        bot_id: uuid.UUID,
        conversation_id: uuid.UUID | None,
        public_only: bool,
        jar_ids: Sequence[uuid.UUID],
        message: str,
        passages: int,
        now: datetime,
    ) -> tuple[TurnContext, list[Hit]]: ...

    async def write(self, turn: TurnWrite) -> Written: ...

    async def hand_off(self, turn: TurnWrite, opening: Opening) -> Written: ...

    def turn(self, hold: bool) -> AbstractAsyncContextManager[None]: ...

    async def close(self) -> None: ...


def retrieval_text(message: str, history: list[HistoryItem]) -> str:
    """The question plus the previous user message, so a follow-up ("and on Free?") finds
    the article the conversation is about."""
    previous = next((h.content for h in reversed(history) if h.role == "user"), "")
    return f"{message} {previous}".strip()


def _context(conversation_id: uuid.UUID, rows: Sequence[Any]) -> TurnContext:
    """From rows of (handled_by, message_count, created_at, bot_since_seq, bot_since_at,
    seq, role, content, confidence, user_name), newest message first."""
    if not rows:
        raise ConversationNotFound()
    first = rows[0]
    if first[0] == "closed":
        raise ConversationClosed()
    ordered = [r for r in rows if r[6]][::-1]
    since = first[3]
    history = [HistoryItem(r[6], r[7], r[8]) for r in ordered]
    return TurnContext(
        conversation_id,
        False,
        first[0],
        first[1],
        first[4] or first[2],
        history,
        since,
        [h for h, r in zip(history, ordered, strict=True) if r[5] > since],
        first[9],
    )


def _new_context(now: datetime) -> TurnContext:
    return TurnContext(new_id(), True, "bot", 0, now, [], 0, [])


def _sources(message: NewMessage) -> str | None:
    return None if message.sources is None else json.dumps(message.sources)


# --- PostgreSQL: raw asyncpg ----------------------------------------------------------------

# The conversation is found by its id alone (OFFSET 0 keeps the other conditions out of the
# subquery): given "id = $1 AND bot_id = $2", the cached generic plan sometimes combined the
# primary key with the index on bot_id, reading every conversation of the bot, 1.5-1.8 ms
# a turn under load instead of 0.07 (pg_stat_statements, bench/chat_turn.py).
_PG_LOAD = f"""
SELECT c.handled_by, c.message_count, c.created_at, c.bot_since_seq, c.bot_since_at,
       m.seq, m.role, m.content, m.confidence, c.user_name
FROM (SELECT * FROM nectar_bot_conversations WHERE id = $1 OFFSET 0) AS c
LEFT JOIN LATERAL (
    SELECT seq, role, content, confidence FROM nectar_bot_messages
    WHERE conversation_id = c.id ORDER BY seq DESC LIMIT {HISTORY_TURNS}
) AS m ON true
WHERE c.bot_id = $2 AND (NOT $3::boolean OR c.origin = 'public')
ORDER BY m.seq DESC
"""  # noqa: S608 - constants only; values are bound

_PG_RESERVE_NEW = """
    INSERT INTO nectar_bot_conversations (id, bot_id, user_ref, user_name, user_email,
        metadata, message_count, handled_by, origin, bot_since_seq, created_at,
        last_message_at)
    VALUES (:conv, :bot, :user_ref, :user_name, :user_email, :metadata::jsonb, :added,
        :conv_handled_by, :origin, 0, :now, :now)
    RETURNING 1 AS first
"""
_PG_RESERVE_NEXT = """
    UPDATE nectar_bot_conversations
    SET message_count = message_count + :added, last_message_at = :now
    WHERE id = :conv
    RETURNING message_count - :added + 1 AS first
"""
_PG_MESSAGE = """
    INSERT INTO nectar_bot_messages (id, conversation_id, seq, role, content, confidence,
        sources, response_time_ms, created_at)
    SELECT :m{i}_id, :conv, c.first + {i}, :m{i}_role, :m{i}_content, :m{i}_confidence,
        :m{i}_sources::jsonb, :m{i}_rt, :now
    FROM c
"""
_PG_USAGE = """
    INSERT INTO nectar_bot_usage (id, bot_id, conversation_id, message_id, response_time_ms,
        confidence, knowledge_matches, rate_limit_hit, handled_by, created_at)
    SELECT :usage_id, :bot, :conv, :usage_message, :usage_rt, :usage_confidence, :matches,
        false, :handled_by, :now
    FROM c
"""
_PG_OPEN_HANDOFF = """
    (SELECT json_build_object('id', h.id, 'status', h.status, 'reason', h.reason,
                              'urgency', h.urgency)::text
     FROM nectar_bot_handoffs AS h
     WHERE h.conversation_id = :conv AND h.status IN ('pending', 'assigned', 'in_progress')
     LIMIT 1)
"""
_PG_NOTIFY_ASSIGNEE = f"""
    INSERT INTO notifications (id, user_id, handoff_id, kind, title, body, urgency, data,
        created_at)
    SELECT :nt_id, h.assignee_id, h.id, '{NOTICE_KIND}', :nt_title, :nt_body, h.urgency,
        :nt_data::jsonb || jsonb_build_object('handoff_id', h.id, 'bot_id', h.bot_id), :now
    FROM nectar_bot_handoffs AS h
    WHERE h.conversation_id = :conv AND h.status IN ('assigned', 'in_progress')
      AND h.assignee_id IS NOT NULL
      AND NOT EXISTS (
          SELECT FROM notifications AS n
          WHERE n.user_id = h.assignee_id AND n.handoff_id = h.id
            AND n.kind = '{NOTICE_KIND}' AND n.read_at IS NULL)
    RETURNING id, user_id, handoff_id, kind, title, body, urgency, data, read_at, created_at
"""  # noqa: S608 - constants only; values are bound
_PG_OPEN_HANDOFF_OF = f"SELECT {_PG_OPEN_HANDOFF.replace(':conv', '$1')}"
_NAME = re.compile(r"(?<!:):([a-z][a-z0-9_]*)")


@dataclass(frozen=True, slots=True)
class _Statement:
    """SQL written with :names, turned into asyncpg's $1, $2, ... once."""

    sql: str
    names: tuple[str, ...]

    @classmethod
    def of(cls, sql: str) -> _Statement:
        names: dict[str, int] = {}

        def number(match: re.Match[str]) -> str:
            return f"${names.setdefault(match.group(1), len(names) + 1)}"

        return cls(_NAME.sub(number, sql), tuple(names))

    def args(self, values: dict[str, Any]) -> list[Any]:
        return [values[name] for name in self.names]


def _pg_write(new: bool, messages: int, relay: bool) -> _Statement:
    parts = [f"WITH c AS ({_PG_RESERVE_NEW if new else _PG_RESERVE_NEXT})"]
    parts += [f", m{i} AS ({_PG_MESSAGE.format(i=i)})" for i in range(messages)]
    parts.append(f", u AS ({_PG_USAGE})")
    if relay:
        parts.append(f", nt AS ({_PG_NOTIFY_ASSIGNEE})")
        returned = f"{_PG_OPEN_HANDOFF}, (SELECT row_to_json(nt)::text FROM nt)"  # noqa: S608
    else:
        returned = "NULL::text, NULL::text"
    parts.append(f"SELECT c.first, {returned} FROM c")  # noqa: S608 - constants only
    return _Statement.of("\n".join(parts))


_PG_WRITES = {
    (new, n, handoff): _pg_write(new, n, handoff)
    for new in (True, False)
    for n in (1, 2)
    for handoff in (True, False)
}


# The turn that opens a handoff: two statements, no transaction. The first only reads what
# the context snapshot needs (the conversation, its latest messages, the people to notify,
# and its message counter); the handoff's rows are built in Python by the same functions as
# the portable path; the second statement stores everything at once (the user's message,
# the notice, the handoff, its first event, its outbox rows, the usage row), guarded by the
# counter read: if another turn of the conversation came in between, nothing is written
# and the turn reads again. One statement is atomic, so BEGIN and COMMIT (two more round
# trips, and a transaction held open while Python builds the rows) are not needed.
_PG_PEOPLE = """
    (SELECT json_agg(json_build_array(u.id, u.email))::text FROM users AS u
     WHERE u.is_active AND u.role = ANY({roles}))
"""
_PG_HANDOFF_READ_NEW = f"SELECT NULL::int, NULL::text, NULL::text, {_PG_PEOPLE.format(roles='$1')}"
_PG_HANDOFF_READ = f"""
SELECT c.message_count,
    (SELECT row_to_json(x)::text FROM (
        SELECT c.user_ref, c.user_name, c.user_email, c.metadata, c.created_at) AS x),
    (SELECT json_agg(y ORDER BY y.seq)::text FROM (
        SELECT id, seq, role, content, confidence, sources, created_at
        FROM nectar_bot_messages WHERE conversation_id = $1
        ORDER BY seq DESC LIMIT {MAX_CONTEXT_MESSAGES - 1}) AS y),
    {_PG_PEOPLE.format(roles="$2")},
    c.handled_by
FROM (SELECT * FROM nectar_bot_conversations WHERE id = $1 OFFSET 0) AS c
"""  # noqa: S608 - constants only; values are bound
# A conversation with an open handoff is the human's already, so the turn hands it over
# whether or not its own handoff is the one stored (another turn may have opened one).
_PG_HANDOFF_RESERVE = """
    UPDATE nectar_bot_conversations
    SET message_count = message_count + :added, last_message_at = :now, handled_by = 'human'
    WHERE id = :conv AND message_count = :expected AND handled_by <> 'closed'
    RETURNING message_count - :added + 1 AS first
"""
HANDOFF_ATTEMPTS = 5


def _from_json(
    table: str, columns: Sequence[str], param: str, many: bool = False, only_with: str = ""
) -> str:
    """INSERT of rows given as JSON objects with these keys (other columns get defaults);
    ``only_with``: a CTE that must have returned a row."""
    cols = ", ".join(columns)
    fn = "jsonb_populate_recordset" if many else "jsonb_populate_record"
    source = f"{only_with + ', ' if only_with else ''}{fn}(NULL::{table}, {param}::jsonb) AS r"
    picked = ", ".join(f"r.{c}" for c in columns)
    return f"INSERT INTO {table} ({cols}) SELECT {picked} FROM {source}"  # noqa: S608


@functools.lru_cache(maxsize=16)
def _pg_handoff_write(
    new: bool,
    handoff: tuple[str, ...],
    event: tuple[str, ...],
    delivery: tuple[str, ...],
    message: tuple[str, ...],
    usage: tuple[str, ...],
) -> _Statement:
    reserve = _PG_RESERVE_NEW if new else _PG_HANDOFF_RESERVE
    h = _from_json("nectar_bot_handoffs", handoff, ":handoff", only_with="c")
    e = _from_json("nectar_bot_handoff_events", event, ":event", only_with="h")
    d = _from_json("notification_deliveries", delivery, ":deliveries", True, only_with="h")
    m = _from_json("nectar_bot_messages", message, ":messages", True, only_with="c")
    u = _from_json("nectar_bot_usage", usage, ":usage", only_with="c")
    return _Statement.of(
        f"""
    WITH c AS ({reserve}),
    m AS ({m}),
    h AS ({h} ON CONFLICT DO NOTHING RETURNING id),
    e AS ({e}),
    d AS ({d} RETURNING id),
    u AS ({u})
    SELECT (SELECT count(*) FROM c), (SELECT id FROM h),
        (SELECT coalesce(array_agg(id), '{{}}') FROM d)
    """  # noqa: S608 - constants only; values are bound
    )


def _json(row: dict[str, Any] | list[dict[str, Any]]) -> str:
    return json.dumps(row, default=str)


def _stored(message: dict[str, Any]) -> dict[str, Any]:
    message["created_at"] = datetime.fromisoformat(message["created_at"])
    return message


async def _keep_session(conn: asyncpg.Connection) -> None:
    """No reset query on release (asyncpg's default costs a round trip every time): the turn
    runs single statements in autocommit and never changes session state, takes advisory
    locks, listens or leaves cursors open."""


class PgTurnStore:
    """The turn on PostgreSQL: fixed statements on a raw asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool, acquire_timeout: float = 10.0) -> None:
        self.pool = pool
        self.acquire_timeout = acquire_timeout
        # The connection a turn holds from its read to its write (``turn``); this store's
        # own, so that another store's statements never run on it.
        self._held: ContextVar[asyncpg.Connection | None] = ContextVar(
            f"nectar_turn_connection_{id(self)}", default=None
        )

    @classmethod
    async def open(cls, dsn: str, size: int) -> PgTurnStore:
        pool = await asyncpg.create_pool(
            dsn,
            # A connect on acquire is bounded even where acquire itself is not (see _acquire).
            timeout=CONNECT_SECONDS,
            min_size=1,
            max_size=size,
            max_inactive_connection_lifetime=300,
            reset=_keep_session,
        )
        return cls(pool)

    async def close(self) -> None:
        # Graceful close waits for every connection to come back; shutdown must not hang on
        # one that a cancelled request never returned.
        try:
            await asyncio.wait_for(self.pool.close(), CLOSE_SECONDS)
        except TimeoutError:
            log.warning(
                "chat pool: connections still in use after %s s; closing them", CLOSE_SECONDS
            )
            self.pool.terminate()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        held = self._held.get()
        if held is not None:
            yield held
            return
        conn = await self._acquire()
        try:
            yield conn
        finally:
            await self.pool.release(conn)

    async def _acquire(self) -> asyncpg.Connection:
        if self.pool.get_idle_size():
            # One is free: no timeout, which asyncpg implements with a task of its own per
            # acquire (and again per release), a noticeable share of a turn's CPU.
            return await self.pool.acquire()
        try:
            return await self.pool.acquire(timeout=self.acquire_timeout)
        except TimeoutError:
            log.warning("no PostgreSQL connection free for a chat turn")
            raise Overloaded() from None

    @asynccontextmanager
    async def turn(self, hold: bool) -> AsyncIterator[None]:
        """With ``hold``, one connection serves the turn's read and write (and what the
        responder does in between, which must not wait on anything): one pool checkout
        instead of two."""
        if not hold:
            yield
            return
        async with self._connection() as conn:
            token = self._held.set(conn)
            try:
                yield
            finally:
                self._held.reset(token)

    async def read(
        self,
        bot_id: uuid.UUID,
        conversation_id: uuid.UUID | None,
        public_only: bool,
        jar_ids: Sequence[uuid.UUID],
        message: str,
        passages: int,
        now: datetime,
    ) -> tuple[TurnContext, list[Hit]]:
        async with self._connection() as conn:
            if conversation_id is None:
                ctx = _new_context(now)
            else:
                rows = await conn.fetch(_PG_LOAD, conversation_id, bot_id, public_only)
                ctx = _context(conversation_id, rows)
            if ctx.handled_by != "bot" or not jar_ids:
                return ctx, []
            query = pg_query(retrieval_text(message, ctx.history))
            if query is None:
                return ctx, []
            found = await conn.fetch(POSTGRES_SEARCH, query, list(jar_ids), passages)
        return ctx, [hit_from_row(r) for r in found]

    async def write(self, turn: TurnWrite) -> Written:
        new = turn.new
        values: dict[str, Any] = {
            "conv": turn.conversation_id,
            "bot": turn.bot_id,
            "added": len(turn.messages),
            "now": turn.now,
            "usage_id": new_id(),
            "usage_message": turn.usage_message_id,
            "usage_rt": turn.response_time_ms,
            "usage_confidence": turn.confidence,
            "matches": turn.knowledge_matches,
            "handled_by": turn.handled_by,
        }
        if new is not None:
            values.update(_opening_values(new, "bot"))
        for i, m in enumerate(turn.messages):
            values.update(
                {
                    f"m{i}_id": m.id,
                    f"m{i}_role": m.role,
                    f"m{i}_content": m.content,
                    f"m{i}_confidence": m.confidence,
                    f"m{i}_sources": _sources(m),
                    f"m{i}_rt": m.response_time_ms,
                }
            )
        relay = turn.relay
        if relay is not None:
            values.update(
                nt_id=relay.id, nt_title=relay.title, nt_body=relay.body, nt_data=_json(relay.data)
            )
        statement = _PG_WRITES[(new is not None, len(turn.messages), relay is not None)]
        async with self._connection() as conn:
            row = await conn.fetchrow(statement.sql, *statement.args(values))
        if row is None:  # deleted since the turn read it
            raise ConversationNotFound()
        handoff = json.loads(row[1]) if row[1] else None
        return Written(row[0], handoff, json.loads(row[2]) if row[2] else None)

    async def hand_off(self, turn: TurnWrite, opening: Opening) -> Written:
        roles = outbox.targeted_roles(opening.config, EventType.created)
        async with self._connection() as conn:
            for _ in range(HANDOFF_ATTEMPTS):
                if turn.new is None:
                    read = await conn.fetchrow(_PG_HANDOFF_READ, turn.conversation_id, roles)
                    if read is None:  # deleted since the turn read it
                        raise ConversationNotFound()
                    if read[4] == "closed":  # closed since the turn read it
                        raise ConversationClosed()
                else:
                    read = await conn.fetchrow(_PG_HANDOFF_READ_NEW, roles)
                statement, values, first, handoff = _handoff_write(turn, opening, *read[:4])
                stored, inserted, delivery_ids = await conn.fetchrow(
                    statement.sql, *statement.args(values)
                )
                if stored:
                    break
            else:
                log.warning(
                    "conversation %s: %d handoff attempts met another turn each time",
                    turn.conversation_id,
                    HANDOFF_ATTEMPTS,
                )
                raise Overloaded("this conversation is busy; retry shortly")
            if inserted is not None:
                return Written(first, handoff_service.opened(handoff, list(delivery_ids)))
            # Another turn opened one a moment ago: this message is relayed to it instead.
            current = await conn.fetchval(_PG_OPEN_HANDOFF_OF, turn.conversation_id)
        return Written(first, json.loads(current) if current else None)


def _handoff_write(
    turn: TurnWrite,
    opening: Opening,
    count: int | None,
    conv: str | None,
    history: str | None,
    people: str | None,
) -> tuple[_Statement, dict[str, Any], int, dict[str, Any]]:
    """The statement that stores a handoff turn, its values, the user's message's seq and
    the handoff's row, from what _PG_HANDOFF_READ(_NEW) returned (count None: a new
    conversation)."""
    user, notice = turn.messages
    new = turn.new
    first = 1 if count is None else count + 1
    conversation: dict[str, Any] = (
        json.loads(conv)
        if conv
        else {
            "user_ref": new and new.user_ref,
            "user_name": new and new.user_name,
            "user_email": new and new.user_email,
            "metadata": new.metadata if new else {},
            "created_at": turn.now.isoformat(),
        }
    )
    conversation["created_at"] = datetime.fromisoformat(conversation["created_at"])
    asked = _message_row(turn.conversation_id, first, user, turn.now)
    context, summary = handoff_context.build(
        bot=opening.bot,
        conversation_id=turn.conversation_id,
        conversation=conversation,
        messages=[*(_stored(m) for m in json.loads(history or "[]")), asked],
        trigger_message_id=user.id,
        reason=opening.decision.reason.value,
        urgency=opening.decision.urgency.value,
        evidence=opening.decision.evidence,
        bot_draft=opening.draft,
        now=turn.now,
    )
    handoff = handoff_service.handoff_row(
        opening.config,
        handoff_id=new_id(),
        bot_id=turn.bot_id,
        conversation_id=turn.conversation_id,
        decision=opening.decision,
        context=context,
        summary=summary,
        trigger_message_id=user.id,
        opened_by=None,
        now=turn.now,
    )
    event = handoff_service.created_event(handoff, turn.now)
    deliveries = outbox.plan_rows(
        opening.config,
        handoff_id=handoff["id"],
        event=EventType.created,
        now=turn.now,
        people=[(uuid.UUID(i), e) for i, e in json.loads(people or "[]")],
        bot_methods=opening.bot_methods,
    )
    messages = [asked, _message_row(turn.conversation_id, first + 1, notice, turn.now)]
    usage = _usage_row(turn)
    statement = _pg_handoff_write(
        new is not None,
        tuple(handoff),
        tuple(event),
        tuple(deliveries[0]) if deliveries else ("id",),
        tuple(asked),
        tuple(usage),
    )
    values: dict[str, Any] = {
        "conv": turn.conversation_id,
        "added": 2,
        "now": turn.now,
        "expected": count,
        "handoff": _json(handoff),
        "event": _json(event),
        "deliveries": _json(deliveries),
        "messages": _json(messages),
        "usage": _json(usage),
    }
    if new is not None:
        values.update(_opening_values(new, "human"))
    return statement, values, first, handoff


def _opening_values(new: NewConversation, handled_by: str) -> dict[str, Any]:
    """The values _PG_RESERVE_NEW takes besides conv, added and now."""
    return {
        "bot": new.bot_id,
        "user_ref": new.user_ref,
        "user_name": new.user_name,
        "user_email": new.user_email,
        "metadata": json.dumps(new.metadata),
        "origin": new.origin,
        "conv_handled_by": handled_by,
    }


# --- SQLite (or any engine): SQLAlchemy Core ---------------------------------------------------


class SqlTurnStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def close(self) -> None:
        return None

    def turn(self, hold: bool) -> AbstractAsyncContextManager[None]:
        """Read and write are transactions of their own; nothing to hold."""
        return nullcontext()

    async def read(
        self,
        bot_id: uuid.UUID,
        conversation_id: uuid.UUID | None,
        public_only: bool,
        jar_ids: Sequence[uuid.UUID],
        message: str,
        passages: int,
        now: datetime,
    ) -> tuple[TurnContext, list[Hit]]:
        async with self.engine.connect() as conn:
            if conversation_id is None:
                ctx = _new_context(now)
            else:
                rows = list(await conn.execute(_load(conversation_id, bot_id, public_only)))
                ctx = _context(conversation_id, rows)
            if ctx.handled_by != "bot":
                return ctx, []
            text = retrieval_text(message, ctx.history)
            return ctx, await search(conn, list(jar_ids), text, passages)

    async def write(self, turn: TurnWrite) -> Written:
        async with self.engine.begin() as conn:
            first = await reserve(
                conn, turn.conversation_id, turn.new, len(turn.messages), turn.now
            )
            await insert_messages(conn, turn.conversation_id, first, turn.messages, turn.now)
            await conn.execute(sa.insert(_USAGE).values(**_usage_row(turn)))
            handoff = notified = None
            if turn.relay is not None:
                handoff = await open_handoff_of(conn, turn.conversation_id)
                notified = await _notify_assignee(conn, turn, turn.relay)
        return Written(first, handoff, notified)

    async def hand_off(self, turn: TurnWrite, opening: Opening) -> Written:
        user, notice = turn.messages
        async with self.engine.begin() as conn:
            first = await reserve(conn, turn.conversation_id, turn.new, 2, turn.now)
            # The user's message first: the handoff's context snapshot includes it.
            await insert_messages(conn, turn.conversation_id, first, [user], turn.now)
            handoff = await handoff_service.open_handoff(
                conn,
                opening.config,
                bot=opening.bot,
                conversation_id=turn.conversation_id,
                decision=opening.decision,
                trigger_message_id=user.id,
                bot_draft=opening.draft,
                now=turn.now,
                bot_methods=opening.bot_methods,
            )
            if handoff is None:  # another turn opened one a moment ago: relay instead
                handoff = await open_handoff_of(conn, turn.conversation_id)
            await insert_messages(conn, turn.conversation_id, first + 1, [notice], turn.now)
            await conn.execute(sa.insert(_USAGE).values(**_usage_row(turn)))
        return Written(first, handoff)


async def _notify_assignee(
    conn: AsyncConnection, turn: TurnWrite, notice: AssigneeNotice
) -> dict[str, Any] | None:
    """As _PG_NOTIFY_ASSIGNEE: the assignee of the open handoff, unless they have an unread
    one of these for it already."""
    held = (
        await conn.execute(
            sa.select(_HANDOFF.c.id, _HANDOFF.c.assignee_id, _HANDOFF.c.urgency, _HANDOFF.c.bot_id)
            .where(
                _HANDOFF.c.conversation_id == turn.conversation_id,
                _HANDOFF.c.status.in_(("assigned", "in_progress")),
                _HANDOFF.c.assignee_id.is_not(None),
                ~sa.exists().where(
                    _NOTE.c.user_id == _HANDOFF.c.assignee_id,
                    _NOTE.c.handoff_id == _HANDOFF.c.id,
                    _NOTE.c.kind == NOTICE_KIND,
                    _NOTE.c.read_at.is_(None),
                ),
            )
            .limit(1)
        )
    ).first()
    if held is None:
        return None
    row = {
        "id": notice.id,
        "user_id": held.assignee_id,
        "handoff_id": held.id,
        "kind": NOTICE_KIND,
        "title": notice.title,
        "body": notice.body,
        "urgency": held.urgency,
        "data": {**notice.data, "handoff_id": str(held.id), "bot_id": str(held.bot_id)},
        "read_at": None,
        "created_at": turn.now,
    }
    await conn.execute(sa.insert(_NOTE).values(**row))
    return row


def _usage_row(turn: TurnWrite) -> dict[str, Any]:
    return {
        "id": new_id(),
        "bot_id": turn.bot_id,
        "conversation_id": turn.conversation_id,
        "message_id": turn.usage_message_id,
        "response_time_ms": turn.response_time_ms,
        "confidence": turn.confidence,
        "knowledge_matches": turn.knowledge_matches,
        "rate_limit_hit": False,
        "handled_by": turn.handled_by,
        "created_at": turn.now,
    }


def _message_row(
    conversation_id: uuid.UUID, seq: int, m: NewMessage, now: datetime
) -> dict[str, Any]:
    return {
        "id": m.id,
        "conversation_id": conversation_id,
        "seq": seq,
        "role": m.role,
        "content": m.content,
        "confidence": m.confidence,
        "sources": m.sources,
        "response_time_ms": m.response_time_ms,
        "author_id": None,
        "created_at": now,
    }


def _load(conversation_id: uuid.UUID, bot_id: uuid.UUID, public_only: bool) -> sa.Select[Any]:
    query = (
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
            _CONV.c.user_name,
        )
        .select_from(_CONV.outerjoin(_MSG, _MSG.c.conversation_id == _CONV.c.id))
        .where(_CONV.c.id == conversation_id, _CONV.c.bot_id == bot_id)
        .order_by(_MSG.c.seq.desc())
        .limit(HISTORY_TURNS)
    )
    # The keyless endpoint continues only conversations it started.
    return query.where(_CONV.c.origin == "public") if public_only else query


async def reserve(
    conn: AsyncConnection,
    conversation_id: uuid.UUID,
    new: NewConversation | None,
    added: int,
    now: datetime,
) -> int:
    """Create the conversation, or bump its message counter; returns the first new seq."""
    if new is not None:
        await conn.execute(
            sa.insert(_CONV).values(
                id=conversation_id,
                bot_id=new.bot_id,
                user_ref=new.user_ref,
                user_name=new.user_name,
                user_email=new.user_email,
                metadata=new.metadata,
                message_count=added,
                handled_by="bot",
                origin=new.origin,
                created_at=now,
                last_message_at=now,
            )
        )
        return 1
    count = (
        await conn.execute(
            sa.update(_CONV)
            .where(_CONV.c.id == conversation_id)
            .values(message_count=_CONV.c.message_count + added, last_message_at=now)
            .returning(_CONV.c.message_count)
        )
    ).scalar_one_or_none()
    if count is None:  # deleted between the two transactions
        raise ConversationNotFound()
    return int(count) - added + 1


async def insert_messages(
    conn: AsyncConnection,
    conversation_id: uuid.UUID,
    first_seq: int,
    messages: Sequence[NewMessage],
    now: datetime,
) -> None:
    await conn.execute(
        sa.insert(_MSG),
        [_message_row(conversation_id, first_seq + i, m, now) for i, m in enumerate(messages)],
    )


async def open_handoff_of(
    conn: AsyncConnection, conversation_id: uuid.UUID
) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                sa.select(_HANDOFF.c.id, _HANDOFF.c.status, _HANDOFF.c.reason, _HANDOFF.c.urgency)
                .where(
                    _HANDOFF.c.conversation_id == conversation_id,
                    _HANDOFF.c.status.in_(OPEN_HANDOFF),
                )
                .limit(1)
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def open_store(engine: AsyncEngine, database_url: str, pool_size: int) -> TurnStore:
    if engine.dialect.name != "postgresql":
        return SqlTurnStore(engine)
    dsn = sa.make_url(database_url).set(drivername="postgresql")
    return await PgTurnStore.open(dsn.render_as_string(hide_password=False), pool_size)
