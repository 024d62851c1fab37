"""PostgreSQL's side of ``claims``: a claim and a record are each ONE statement, outside any
transaction (so no BEGIN and COMMIT round trips either).

* The claim is the conditional UPDATE in a CTE, joined to the handoff, its bot's and
  assignee's names and the last messages (as JSON). Only when it takes nothing does a second
  statement ask why (waiting for an earlier delivery, or not ours to send).
* The record inserts the attempt and updates the delivery (and, when a platform told us its
  ids, merges them into the handoff's ``external_refs`` with jsonb ``||``, so that another
  channel's keys written meanwhile stay) in CTEs of one UPDATE.
* Both run on asyncpg directly, as SQL compiled once from the Core statements
  (``Compiled``): SQLAlchemy's execution layer (greenlet switches, an execution context,
  result processing) cost a busy worker more CPU than the statements did.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler

from nectar.notifications.claims import (
    EARLY,
    INSERT_ATTEMPT,
    TRANSCRIPT_MESSAGES,
    UPDATE_DELIVERY,
    Claimed,
    D,
    H,
    M,
    Outcome,
    Waiting,
    claim_statement,
    claimed_row,
    handoff_columns,
    handoff_row,
    record_params,
    waiting,
    why_not_statement,
    with_names,
)

_ONE = D.c.id == sa.bindparam("p_delivery_id")
_claimed = claim_statement(_ONE).cte("claimed")
_last = (
    sa.select(M.c.role, M.c.content, M.c.seq)
    .where(M.c.conversation_id == H.c.conversation_id)
    .order_by(M.c.seq.desc())
    .limit(TRANSCRIPT_MESSAGES)
    .correlate(H)
    .subquery("last_messages")
)
_TRANSCRIPT = (
    sa.select(
        sa.func.json_agg(
            aggregate_order_by(
                sa.func.json_build_object(
                    sa.literal_column("'role'"),
                    _last.c.role,
                    sa.literal_column("'content'"),
                    _last.c.content,
                ),
                _last.c.seq,
            ),
            type_=sa.JSON,
        )
    )
    .scalar_subquery()
    .label("transcript")
)
_USER_NAME = H.c.context.op("#>>", return_type=sa.String)(sa.literal_column("'{user_info,name}'"))
CLAIM = sa.select(_claimed, *handoff_columns(_USER_NAME), _TRANSCRIPT).select_from(
    with_names(_claimed.outerjoin(H, H.c.id == _claimed.c.handoff_id))
)
WHY_NOT = why_not_statement(_ONE)

_MERGE_REFS = (
    sa.update(H)
    .where(H.c.id == sa.bindparam("p_handoff_id"))
    .values(
        external_refs=sa.case(
            (sa.func.jsonb_typeof(H.c.external_refs) == "object", H.c.external_refs),
            else_=sa.cast(sa.literal_column("'{}'"), JSONB),
        ).op("||", return_type=JSONB)(sa.bindparam("p_external_refs", type_=JSONB))
    )
)
RECORD = UPDATE_DELIVERY.add_cte(INSERT_ATTEMPT.cte("attempt"))
RECORD_WITH_REFS = UPDATE_DELIVERY.add_cte(INSERT_ATTEMPT.cte("attempt"), _MERGE_REFS.cte("refs"))


class Compiled:
    """A statement compiled once for asyncpg: its SQL, and its parameters in the order the SQL
    numbers them ($1, $2...): ours by name, the statement's own constants as compiled.

    The values go to asyncpg as they are, so only types asyncpg takes as SQLAlchemy would
    send them may be bound: str, int, bool, None, UUIDs, aware datetimes, and JSON as text."""

    def __init__(self, statement: sa.ClauseElement, dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        self._names = list(compiled.positiontup or ())
        self._constants: dict[str, Any] = {}
        for name in self._names:
            if not name.startswith("p_"):
                value = compiled.binds[name].effective_value
                if not (value is None or isinstance(value, str | int)):
                    raise TypeError(f"constant {name}={value!r} would need SQLAlchemy's binding")
                self._constants[name] = value

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        constants = self._constants
        return [constants[n] if n in constants else params[n] for n in self._names]


# SQLAlchemy's own connect arguments, not asyncpg's.
_NOT_ASYNCPG = ("async_creator_fn", "prepared_statement_cache_size", "prepared_statement_name_func")


async def _keep_session(_connection: Any) -> None:
    """Nothing to reset when a connection goes back: these statements change no session
    state (asyncpg's default reset is a round trip per release)."""


class PostgresStore:
    """Claims and records on a small asyncpg pool of its own, made with the engine's connect
    arguments when first needed and closed with the engine (or by ``aclose``). Borrowing
    SQLAlchemy's connections instead cost a greenlet switch and pool events per checkout,
    a tenth of a busy worker's CPU."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._claim = Compiled(CLAIM, engine.dialect)
        self._why_not = Compiled(WHY_NOT, engine.dialect)
        self._record = Compiled(RECORD, engine.dialect)
        self._record_with_refs = Compiled(RECORD_WITH_REFS, engine.dialect)
        size = getattr(engine.pool, "size", None)
        self._size = size() if callable(size) else 5
        self._pool: Any = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Lock | None = None
        sa.event.listen(engine.sync_engine, "engine_disposed", self._terminate)

    async def _connections(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._pool_loop is loop:
            return self._pool
        if self._opening is None or self._pool_loop is not loop:
            self._terminate()
            self._opening, self._pool_loop = asyncio.Lock(), loop
        async with self._opening:
            if self._pool is None:
                import asyncpg

                cargs, cparams = self._engine.dialect.create_connect_args(self._engine.url)
                for key in _NOT_ASYNCPG:
                    cparams.pop(key, None)
                self._pool = await asyncpg.create_pool(
                    *cargs, min_size=0, max_size=self._size, reset=_keep_session, **cparams
                )
        return self._pool

    def _terminate(self, *_: Any) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def _asyncpg(self) -> AsyncIterator[Any]:
        """A connection outside any transaction (each statement commits on its own). One that
        broke, or was interrupted mid-statement, is not pooled again (asyncpg's pool)."""
        async with (await self._connections()).acquire() as conn:
            yield conn

    async def claim(
        self, delivery_id: uuid.UUID, now: datetime, lease: timedelta
    ) -> Claimed | Waiting | None:
        params = {
            "p_delivery_id": delivery_id,
            "p_due": now + EARLY,
            "p_lease_until": now + lease,
            "p_now": now,
        }
        async with self._asyncpg() as conn:
            row = await conn.fetchrow(self._claim.sql, *self._claim.args(params))
            if row is None:
                found = await conn.fetchrow(self._why_not.sql, *self._why_not.args(params))
                return waiting(found)
        # Without SQLAlchemy's codecs, JSON arrives as text.
        values = {**row, "data": _json(row["data"]), "external_refs": _json(row["external_refs"])}
        handoff = None
        if row["handoff_id"] is not None and row["bot_id"] is not None:
            handoff = handoff_row(values, row["handoff_id"], _json(row["transcript"]) or [])
        return claimed_row(values, delivery_id, handoff)

    async def record(self, outcome: Outcome) -> None:
        params = record_params(outcome)
        statement = self._record
        if outcome.external_refs and outcome.handoff_id is not None:
            statement = self._record_with_refs
            params["p_handoff_id"] = outcome.handoff_id
            params["p_external_refs"] = json.dumps(outcome.external_refs, default=str)
        async with self._asyncpg() as conn:
            await conn.execute(statement.sql, *statement.args(params))


def _json(text: str | None) -> Any:
    return json.loads(text) if text is not None else None
