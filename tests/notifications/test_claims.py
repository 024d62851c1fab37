"""The database side of an attempt (``claims``, ``claims_pg``): what concurrent jobs must
not lose, and the statements PostgreSQL runs on asyncpg directly."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from nectar.db import utcnow
from nectar.notifications.channels.base import EventType
from nectar.notifications.claims import Claimed, Outcome, Store
from nectar.notifications.claims_pg import Compiled
from nectar.notifications.models import DeliveryStatus
from tests.notifications.test_tasks import add_delivery, handoff_refs, personal_handoff


async def test_ids_from_two_platforms_recorded_at_once_are_both_kept(
    client: Any, admin: Any, db: AsyncEngine
) -> None:
    """Zendesk's and ServiceNow's answers for one handoff recorded at the same moment: the
    handoff keeps both (each merges its keys into what is stored, never replaces it), and
    each delivery gets its own attempt."""
    handoff_id = await personal_handoff(client, admin, db)
    ids = [
        await add_delivery(db, handoff_id, EventType.created, channel, channel)
        for channel in ("zendesk", "servicenow")
    ]
    store = Store(db)
    now = utcnow()
    claimed = await asyncio.gather(*(store.claim(i, now, timedelta(seconds=60)) for i in ids))
    assert all(isinstance(c, Claimed) for c in claimed)
    refs = [{"zendesk_ticket_id": 7}, {"servicenow_sys_id": "abc", "servicenow_number": "INC1"}]
    await asyncio.gather(
        *(
            store.record(
                Outcome(
                    delivery_id=i,
                    handoff_id=handoff_id,
                    number=1,
                    started_at=now,
                    duration_ms=3,
                    status_code=201,
                    error=None,
                    status=DeliveryStatus.delivered,
                    finished_at=utcnow(),
                    external_refs=r,
                )
            )
            for i, r in zip(ids, refs, strict=True)
        )
    )
    assert await handoff_refs(db, handoff_id) == {**refs[0], **refs[1]}
    async with db.connect() as conn:
        rows = (
            await conn.execute(
                sa.text(
                    "SELECT d.channel, d.status, count(a.id) FROM notification_deliveries d "
                    "JOIN notification_delivery_attempts a ON a.delivery_id = d.id "
                    "WHERE d.channel IN ('zendesk', 'servicenow') "
                    "GROUP BY d.id, d.channel, d.status"
                )
            )
        ).all()
    assert sorted(tuple(r) for r in rows) == [
        ("servicenow", "delivered", 1),
        ("zendesk", "delivered", 1),
    ]


def test_a_statement_whose_constants_asyncpg_cannot_take_is_refused() -> None:
    """Values go to asyncpg without SQLAlchemy's bind processing: a constant that would need
    it (here a JSON path, a tuple) is refused when the statement is compiled, at import."""
    from sqlalchemy.dialects.postgresql import asyncpg

    from nectar.notifications.claims import H

    with pytest.raises(TypeError, match="context"):
        Compiled(sa.select(H.c.context[("user_info", "name")].as_string()), asyncpg.dialect())
    plain = Compiled(sa.select(H.c.id).where(H.c.status == "open"), asyncpg.dialect())
    assert plain.args({}) == ["open"]


async def test_postgres_connections_close_with_the_engine(
    database_url: str, backend: str, db: AsyncEngine
) -> None:
    """The store's own asyncpg connections go when its engine is disposed (the API's
    in-process worker never closes the store itself), and come back when needed."""
    if backend != "postgres":
        pytest.skip("only PostgreSQL's store holds connections of its own")
    from nectar.db import create_engine

    async def alive(pid: int) -> bool:
        async with db.connect() as conn:
            found = await conn.execute(
                sa.text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            )
            return found.first() is not None

    engine = create_engine(database_url)
    store = Store(engine)
    postgres = store._postgres
    async with postgres._asyncpg() as conn:
        pid = conn.get_server_pid()
    assert await alive(pid)
    await engine.dispose()
    for _ in range(50):  # terminate() closes the socket; the backend ends a moment later
        if not await alive(pid):
            break
        await asyncio.sleep(0.02)
    assert not await alive(pid)
    missing = await store.claim(uuid.uuid4(), utcnow(), timedelta(seconds=60))
    assert missing is None  # a fresh pool, for a delivery that does not exist
    await store.aclose()
    await engine.dispose()
