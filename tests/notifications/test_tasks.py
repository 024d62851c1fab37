"""One attempt at a delivery as the worker makes it (``tasks.deliver``), against receivers
that check what the real platforms require: what leaves for an external platform is
PII-scrubbed once, by the worker, whatever the channel; retries honour Retry-After; every
attempt is recorded; the last one ends dead; a platform's ids are kept on the handoff."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from nectar.db import UTCDateTime, utcnow
from nectar.notifications import outbox
from nectar.notifications.channels.base import EventType
from nectar.notifications.models import Delivery
from nectar.notifications.tasks import Runtime, deliver
from tests.helpers import create_bot
from tests.notifications import (
    test_pagerduty,
    test_servicenow,
    test_slack,
    test_teams,
    test_webhook,
    test_zendesk,
)
from tests.notifications.platforms import receiver as platform_receiver
from tests.notifications.test_outbox import Recorder, runtime_for, write_config
from tests.receivers import Receiver, Scripted

_D = Delivery.__table__  # type: ignore[attr-defined]

# What users and agents typed, and what must never reach a platform.
MESSAGE = "Refund my card 4111 1111 1111 1111 please, or call me on +44 20 7946 0958"
SUMMARY = "Ada (ada@example.com) wants a refund to DE89 3704 0044 0532 0130 00."
NOTES = "Refunded; called back on +1 415 555 2671."
PERSONAL = (
    "ada@example.com",
    "4111",
    "7946",
    "DE89",
    "2671",
    "carol@corp.example",
    "bob@corp.example",
    "123-45-6789",
)


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    # The app's own in-process worker knows in_app only, and its sweeper leaves the
    # deliveries these tests make by hand alone.
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    return {
        "config": write_config(app_dir, notifications={"delivery": {"sweep_after_seconds": 600}})
    }


# --- platforms --------------------------------------------------------------------------------


def _platform(
    name: str, receiver: Receiver
) -> tuple[dict[str, Any], str, Callable[[Receiver], None]]:
    """(integration config, recipient, how to script the receiver for the events sent)."""
    url = receiver.url
    if name == "slack":
        return {"webhook_url": url + test_slack.HOOK_PATH}, name, lambda r: None
    if name == "teams":
        return {"webhook_url": test_teams.flow_url(receiver)}, name, lambda r: None
    if name == "pagerduty":
        config = {
            "integration_key": test_pagerduty.ROUTING_KEY,
            "events_url": url + test_pagerduty.ENQUEUE,
        }
        return config, name, lambda r: None
    if name == "zendesk":
        config = {
            "api_endpoint": url,
            "email": test_zendesk.EMAIL,
            "api_key": test_zendesk.TOKEN,
        }

        def zendesk(r: Receiver) -> None:
            ticket = test_zendesk.ticket
            r.then(201, ticket(7))  # created
            r.then(200, ticket(7, status="open")).then(200, ticket(7, status="solved"))
            r.then(200, ticket(7, status="open")).then(200, ticket(7, status="solved"))
            r.then(201, ticket(8))  # the test ticket

        return config, name, zendesk
    if name == "servicenow":
        config = {
            "instance_url": url,
            "username": test_servicenow.USERNAME,
            "password": test_servicenow.PASSWORD,
        }

        def servicenow(r: Receiver) -> None:
            created = {"result": test_servicenow.incident()}
            r.then(200, test_servicenow.NOTHING).then(201, created)  # look up, create
            r.then(200, created).then(200, created)  # resolved, cancelled
            r.then(200, test_servicenow.NOTHING).then(201, created)  # the test incident

        return config, name, servicenow
    assert name == "webhook"
    hook = f"{url}/hooks/nectar"
    config = {"endpoints": [{"url": hook, "secret": test_webhook.SECRET}]}
    return config, hook, lambda r: None


CHECKS: dict[str, tuple[Any, Scripted]] = {
    "slack": (test_slack.slack_check, Scripted(200, "ok")),
    "teams": (test_teams.teams_check, Scripted(202, "")),
    "pagerduty": (test_pagerduty.pagerduty_check, Scripted(202, test_pagerduty.ACCEPTED)),
    "zendesk": (test_zendesk.zendesk_check, Scripted(200, {})),
    "servicenow": (test_servicenow.servicenow_check, Scripted(200, test_servicenow.NOTHING)),
    "webhook": (test_webhook.consumer(test_webhook.SECRET), Scripted(200, {})),
}


@asynccontextmanager
async def platform_runtime(
    db: AsyncEngine, tmp_path: Path, name: str, **delivery: Any
) -> AsyncIterator[tuple[Runtime, Recorder, Receiver, str]]:
    """A worker runtime whose only external channel is ``name``, at a local receiver that
    checks what that platform requires; and the delivery recipient for it."""
    check, default = CHECKS[name]
    async with platform_receiver(check, default) as receiver:
        integration, recipient, script = _platform(name, receiver)
        script(receiver)
        path = write_config(
            tmp_path,
            mode="enterprise_external",
            integrations={name: integration, "allow_private_hosts": ["127.0.0.1"]},
            notifications={"delivery": {"sweep_after_seconds": 600, **delivery}},
        )
        runtime, recorder = runtime_for(db, path)
        try:
            yield runtime, recorder, receiver, recipient
        finally:
            await runtime.channels.aclose()


# --- data -------------------------------------------------------------------------------------


async def personal_handoff(client: httpx.AsyncClient, admin: Any, db: AsyncEngine) -> uuid.UUID:
    """A handoff full of personal data: the user's messages and name, the summary, the
    resolution notes, and an agent whose name is an email address."""
    bot = await create_bot(client, admin, handoff_enabled=False)
    r = await client.post(
        f"/api/nectar-bots/{bot['id']}/chat",
        json={"message": MESSAGE, "user": {"name": "ada@example.com", "email": "ada@example.com"}},
        headers={"X-API-Key": bot["api_key"]},
    )
    assert r.status_code == 200, r.text
    cid = r.json()["conversation_id"]
    r = await client.post(
        f"/api/nectar-bots/conversations/{cid}/handoff",
        json={"urgency": "high"},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    handoff_id = uuid.UUID(r.json()["handoff"]["id"])
    async with db.begin() as conn:
        await conn.execute(
            sa.text("UPDATE users SET name = 'carol@corp.example' WHERE id = :id").bindparams(
                sa.bindparam("id", type_=sa.Uuid())
            ),
            {"id": admin.id},
        )
        await conn.execute(
            sa.text(
                "UPDATE nectar_bot_handoffs SET summary = :summary, resolution_notes = :notes, "
                "assignee_id = :agent WHERE id = :id"
            ).bindparams(
                sa.bindparam("id", type_=sa.Uuid()), sa.bindparam("agent", type_=sa.Uuid())
            ),
            {"summary": SUMMARY, "notes": NOTES, "agent": admin.id, "id": handoff_id},
        )
    return handoff_id


async def add_delivery(
    db: AsyncEngine,
    handoff_id: uuid.UUID | None,
    event: EventType,
    channel: str,
    recipient: str,
    data: dict[str, Any] | None = None,
    max_attempts: int = 3,
    user_id: uuid.UUID | None = None,
) -> uuid.UUID:
    row = outbox.delivery_row(
        handoff_id, event, channel, recipient, utcnow(), max_attempts, user_id, data
    )
    async with db.begin() as conn:
        await conn.execute(sa.insert(_D), [row])
    delivery_id: uuid.UUID = row["id"]
    return delivery_id


async def delivery_state(db: AsyncEngine, delivery_id: uuid.UUID) -> Any:
    async with db.connect() as conn:
        return (await conn.execute(sa.select(_D).where(_D.c.id == delivery_id))).mappings().one()


async def attempts_of(db: AsyncEngine, delivery_id: uuid.UUID) -> list[Any]:
    async with db.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT number, success, status_code, error, duration_ms "
                "FROM notification_delivery_attempts WHERE delivery_id = :id ORDER BY number"
            ).bindparams(sa.bindparam("id", type_=sa.Uuid())),
            {"id": delivery_id},
        )
        return list(rows)


async def handoff_refs(db: AsyncEngine, handoff_id: uuid.UUID) -> dict[str, Any]:
    from nectar.handoffs.models import Handoff

    table = Handoff.__table__  # type: ignore[attr-defined]
    async with db.connect() as conn:
        refs = (
            await conn.execute(sa.select(table.c.external_refs).where(table.c.id == handoff_id))
        ).scalar_one()
    return dict(refs or {})


# --- PII --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["slack", "teams", "pagerduty", "zendesk", "servicenow", "webhook"]
)
async def test_every_external_platform_receives_scrubbed_text(
    name: str, client: httpx.AsyncClient, admin: Any, db: AsyncEngine, tmp_path: Path
) -> None:
    """The handoff's text (summary, transcript, user, assignee, notes) and the event's
    details (who did it, why) leave scrubbed, on every event and on a test notification."""
    handoff_id = await personal_handoff(client, admin, db)
    async with platform_runtime(db, tmp_path, name) as (runtime, _, platform, recipient):
        events = [
            (EventType.created, {}),
            (EventType.resolved, {"by": "bob@corp.example"}),
            (EventType.cancelled, {"why": "user left, SSN 123-45-6789, call +44 20 7946 0958"}),
        ]
        for event, data in events:
            delivery_id = await add_delivery(db, handoff_id, event, name, recipient, data)
            assert await deliver(runtime, delivery_id) == "delivered", (
                await delivery_state(db, delivery_id)
            )["last_error"]
        test_id = await add_delivery(
            db, None, EventType.test, name, recipient, {"message": "Reply to ada@example.com"}
        )
        assert await deliver(runtime, test_id) == "delivered"

    assert platform.refused == [], platform.refused
    sent = [r for r in platform.requests if r.method != "GET"]
    assert len(sent) >= 4
    raw = "\n".join(r.body.decode() for r in sent)
    raw += json.dumps([r.json() for r in sent], ensure_ascii=False)  # \u escapes undone
    for personal in PERSONAL:
        assert personal not in raw, f"{personal!r} reached {name}"
    # Scrubbed, not dropped: the placeholders arrived where the data was.
    assert "[email]" in raw
    assert "[phone]" in raw


async def test_in_app_notifications_keep_the_full_text(
    client: httpx.AsyncClient, admin: Any, db: AsyncEngine, tmp_path: Path
) -> None:
    handoff_id = await personal_handoff(client, admin, db)
    async with platform_runtime(db, tmp_path, "webhook") as (runtime, _, _platform, _):
        delivery_id = await add_delivery(
            db,
            handoff_id,
            EventType.cancelled,
            "in_app",
            str(admin.id),
            {"why": "duplicate of ada@example.com's request"},
            user_id=admin.id,
        )
        assert await deliver(runtime, delivery_id) == "delivered"
    async with db.connect() as conn:
        body, data = (
            await conn.execute(
                sa.text("SELECT body, data FROM notifications WHERE delivery_id = :id").bindparams(
                    sa.bindparam("id", type_=sa.Uuid())
                ),
                {"id": delivery_id},
            )
        ).one()
    stored = body + json.dumps(data)
    assert "ada@example.com" in stored
    assert "[email]" not in stored


# --- retries, attempts, dead letters ------------------------------------------------------------


async def test_a_retry_waits_as_long_as_the_server_asked_and_every_attempt_is_recorded(
    client: httpx.AsyncClient, admin: Any, db: AsyncEngine, tmp_path: Path
) -> None:
    handoff_id = await personal_handoff(client, admin, db)
    policy = {"max_attempts": 3, "base_delay_seconds": 0.01, "max_delay_seconds": 600}
    async with platform_runtime(db, tmp_path, "webhook", **policy) as (
        runtime,
        recorder,
        platform,
        recipient,
    ):
        delivery_id = await add_delivery(db, handoff_id, EventType.created, "webhook", recipient)
        platform.then(429, {"error": "slow down"}, headers={"Retry-After": "30"})
        before = utcnow()
        assert await deliver(runtime, delivery_id) == "retry"
        state = await delivery_state(db, delivery_id)
        assert state["status"] == "pending" and state["lease_until"] is None
        assert state["next_attempt_at"] >= before + timedelta(seconds=30)
        assert (state["last_status_code"], state["attempts"]) == (429, 1)
        ((ids, delay, tag),) = recorder.calls
        assert ids == [delivery_id] and delay >= 30 and tag == "a1"

        # Not due yet: a job that runs early sends nothing.
        assert await deliver(runtime, delivery_id) == "skipped"
        await _due_now(db, delivery_id)
        platform.then(503, "upstream unavailable")
        assert await deliver(runtime, delivery_id) == "retry"
        await _due_now(db, delivery_id)
        assert await deliver(runtime, delivery_id) == "delivered"

    state = await delivery_state(db, delivery_id)
    assert state["status"] == "delivered" and state["delivered_at"] is not None
    assert state["last_error"] is None and state["last_status_code"] == 200
    attempts = await attempts_of(db, delivery_id)
    assert [(a.number, a.success, a.status_code) for a in attempts] == [
        (1, False, 429),
        (2, False, 503),
        (3, True, 200),
    ]
    assert "429" in attempts[0].error and "503" in attempts[1].error and attempts[2].error is None
    assert all(a.duration_ms >= 0 for a in attempts)
    assert len(platform.requests) == 3
    # Every attempt carried the same webhook-id: the receiver can drop duplicates.
    assert {r.headers["webhook-id"] for r in platform.requests} == {str(delivery_id)}


async def test_the_last_attempt_leaves_the_delivery_dead(
    client: httpx.AsyncClient, admin: Any, db: AsyncEngine, tmp_path: Path
) -> None:
    handoff_id = await personal_handoff(client, admin, db)
    async with platform_runtime(db, tmp_path, "webhook", max_attempts=2) as (
        runtime,
        recorder,
        platform,
        recipient,
    ):
        delivery_id = await add_delivery(
            db, handoff_id, EventType.created, "webhook", recipient, max_attempts=2
        )
        platform.then(500, "boom", times=2)
        assert await deliver(runtime, delivery_id) == "retry"
        await _due_now(db, delivery_id)
        assert await deliver(runtime, delivery_id) == "dead"
        assert len(recorder.calls) == 1  # the dead one is not enqueued again

        # A permanent error ends it at once.
        refused = await add_delivery(db, handoff_id, EventType.created, "webhook", recipient)
        platform.then(400, "bad request")
        assert await deliver(runtime, refused) == "dead"

    state = await delivery_state(db, delivery_id)
    assert (state["status"], state["attempts"], state["last_status_code"]) == ("dead", 2, 500)
    assert "500" in state["last_error"] and state["lease_until"] is None
    assert [a.success for a in await attempts_of(db, delivery_id)] == [False, False]
    state = await delivery_state(db, refused)
    assert (state["status"], state["attempts"], state["last_status_code"]) == ("dead", 1, 400)


async def test_a_job_run_twice_at_once_sends_once(
    client: httpx.AsyncClient, admin: Any, db: AsyncEngine, tmp_path: Path
) -> None:
    handoff_id = await personal_handoff(client, admin, db)
    async with platform_runtime(db, tmp_path, "webhook") as (runtime, _, platform, recipient):
        delivery_id = await add_delivery(db, handoff_id, EventType.created, "webhook", recipient)
        outcomes = await asyncio.gather(*(deliver(runtime, delivery_id) for _ in range(4)))
    assert sorted(outcomes) == ["delivered", "skipped", "skipped", "skipped"]
    assert len(platform.requests) == 1
    assert len(await attempts_of(db, delivery_id)) == 1


async def test_a_platform_s_ids_are_merged_into_the_handoff(
    client: httpx.AsyncClient, admin: Any, db: AsyncEngine, tmp_path: Path
) -> None:
    """The ticket id Zendesk returns is kept on the handoff beside another platform's, and
    the follow-up updates that ticket."""
    handoff_id = await personal_handoff(client, admin, db)
    async with db.begin() as conn:
        await conn.execute(
            sa.text("UPDATE nectar_bot_handoffs SET external_refs = :refs WHERE id = :id")
            .bindparams(sa.bindparam("id", type_=sa.Uuid()))
            .bindparams(sa.bindparam("refs", type_=sa.JSON())),
            {"refs": {"servicenow_sys_id": "abc"}, "id": handoff_id},
        )
    async with platform_runtime(db, tmp_path, "zendesk") as (runtime, _, platform, recipient):
        created = await add_delivery(db, handoff_id, EventType.created, "zendesk", recipient)
        assert await deliver(runtime, created) == "delivered"
        assert await handoff_refs(db, handoff_id) == {
            "servicenow_sys_id": "abc",
            "zendesk_ticket_id": 7,
        }
        resolved = await add_delivery(db, handoff_id, EventType.resolved, "zendesk", recipient)
        assert await deliver(runtime, resolved) == "delivered"
    assert platform.requests[-1].method == "PUT"
    assert platform.requests[-1].path == "/api/v2/tickets/7.json"


async def test_a_follow_up_is_not_held_back_by_a_dead_delivery(
    client: httpx.AsyncClient, admin: Any, db: AsyncEngine, tmp_path: Path
) -> None:
    handoff_id = await personal_handoff(client, admin, db)
    async with platform_runtime(db, tmp_path, "webhook", max_attempts=1) as (
        runtime,
        _,
        platform,
        recipient,
    ):
        first = await add_delivery(
            db, handoff_id, EventType.created, "webhook", recipient, max_attempts=1
        )
        second = await add_delivery(db, handoff_id, EventType.resolved, "webhook", recipient)
        assert await deliver(runtime, second) == "waiting"  # the first is still pending
        platform.then(500, "boom")
        assert await deliver(runtime, first) == "dead"
        assert await deliver(runtime, second) == "delivered"


async def _due_now(db: AsyncEngine, delivery_id: uuid.UUID) -> None:
    async with db.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE notification_deliveries SET next_attempt_at = :due WHERE id = :id"
            ).bindparams(
                sa.bindparam("due", type_=UTCDateTime()), sa.bindparam("id", type_=sa.Uuid())
            ),
            {"due": utcnow() - timedelta(seconds=1), "id": delivery_id},
        )


async def test_a_broken_database_connection_is_dropped_not_pooled_again(
    client: httpx.AsyncClient,
    admin: Any,
    db: AsyncEngine,
    tmp_path: Path,
    backend: str,
    database_url: str,
) -> None:
    """PostgreSQL restarts (here: every connection to the database is killed): an attempt that
    meets a dead pooled connection fails and discards it, and the worker recovers. Whether any
    attempt fails at all is timing: the pool itself drops a connection whose close the event
    loop has already seen."""
    if backend != "postgres":
        pytest.skip("the worker talks to asyncpg directly only on PostgreSQL")
    import asyncpg

    handoff_id = await personal_handoff(client, admin, db)
    async with platform_runtime(db, tmp_path, "webhook") as (runtime, _, platform, recipient):
        first = await add_delivery(db, handoff_id, EventType.created, "webhook", recipient)
        assert await deliver(runtime, first) == "delivered"
        second = await add_delivery(db, handoff_id, EventType.resolved, "webhook", recipient)
        killer = await asyncpg.connect(database_url.replace("+asyncpg", ""))
        try:
            await killer.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await killer.close()
        failures = 0
        for _ in range(20):  # at most one failure per connection the pool held
            try:
                outcome = await deliver(runtime, second)
                break
            except Exception:
                failures += 1
        else:
            pytest.fail("the worker kept meeting dead connections")
    assert outcome == "delivered"
    assert failures <= 10
    assert len(platform.requests) == 2
