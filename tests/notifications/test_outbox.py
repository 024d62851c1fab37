"""From a handoff event to a delivered notification: the outbox, the worker jobs, the
sweeper, retries and the admin's view of deliveries. Faults included."""

from __future__ import annotations

import asyncio
import email
import email.message
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml
from aiosmtpd.controller import Controller
from sqlalchemy.ext.asyncio import AsyncEngine

from nectar.app import create_app
from nectar.config import load_config
from nectar.db import UTCDateTime, sessionmaker, utcnow
from nectar.events import MemoryBus
from nectar.handoffs.tasks import check_sla
from nectar.notifications.registry import build_channels
from nectar.notifications.tasks import Runtime, deliver, sweep
from tests.conftest import make_settings
from tests.helpers import assert_error, create_bot
from tests.receivers import free_port


def write_config(tmp_path: Path, **handoff: Any) -> Path:
    notifications = {
        "notification_types": ["in_app"],
        "delivery": {
            "max_attempts": 3,
            "base_delay_seconds": 0.05,
            "max_delay_seconds": 0.2,
            "timeout_seconds": 1,
            "sweep_after_seconds": 0.1,
        },
    }
    notifications.update(handoff.pop("notifications", {}))
    path = tmp_path / "config.yml"
    path.write_text(
        yaml.safe_dump({"nectar_bots": {"handoff": {"notifications": notifications, **handoff}}})
    )
    return path


class Sink:
    """A real SMTP server (aiosmtpd, in its own thread) that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        self.port = free_port()
        self.closed_port = free_port()  # nothing listens here

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {"config": write_config(tmp_path)}


class Recorder:
    """An enqueue that remembers instead of running (to drive jobs by hand)."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[uuid.UUID], float, str]] = []

    async def __call__(
        self, delivery_ids: list[uuid.UUID], delay: float = 0.0, tag: str = ""
    ) -> None:
        self.calls.append((list(delivery_ids), delay, tag))


def runtime_for(engine: AsyncEngine, config_path: Path) -> tuple[Runtime, Recorder]:
    config = load_config(config_path)
    recorder = Recorder()
    channels = build_channels(config, sessionmaker(engine), MemoryBus())
    return Runtime(engine, config, channels, recorder, "http://nectar.test"), recorder


async def open_handoff(client: httpx.AsyncClient, admin: Any) -> tuple[str, str]:
    bot = await create_bot(client, admin, handoff_enabled=False)
    r = await client.post(
        f"/api/nectar-bots/{bot['id']}/chat",
        json={"message": "hello"},
        headers={"X-API-Key": bot["api_key"]},
    )
    cid = r.json()["conversation_id"]
    r = await client.post(
        f"/api/nectar-bots/conversations/{cid}/handoff",
        json={"urgency": "high"},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    return cid, r.json()["handoff"]["id"]


async def poll(fn: Any, within: float = 5.0) -> Any:
    """Call ``fn`` until it returns something truthy (bounded in time)."""
    async with asyncio.timeout(within):
        while True:
            value = await fn()
            if value:
                return value
            await asyncio.sleep(0.05)


async def test_admins_get_an_in_app_notification_within_a_second(
    client: httpx.AsyncClient, admin: Any, accounts: Any
) -> None:
    other_admin, agent = await accounts("admin"), await accounts("agent")
    _, hid = await open_handoff(client, admin)
    started = asyncio.get_running_loop().time()

    async def inbox(who: Any) -> list[dict]:
        r = await client.get("/api/notifications", headers=who.headers)
        result: list[dict] = r.json()["notifications"]
        return result

    got = await poll(lambda: inbox(other_admin))
    assert asyncio.get_running_loop().time() - started < 1.0
    assert got[0]["handoff_id"] == hid
    assert got[0]["urgency"] == "high"
    assert await poll(lambda: inbox(admin))  # every admin, the escalating one too
    assert await inbox(agent) == []  # target_roles is ["admin"]
    r = await client.get(
        "/api/notifications/deliveries", params={"handoff_id": hid}, headers=admin.headers
    )
    deliveries = r.json()["deliveries"]
    assert {d["channel"] for d in deliveries} == {"in_app"}
    assert all(d["status"] == "delivered" and d["attempts"] == 1 for d in deliveries)
    assert all(d["history"][0]["success"] for d in deliveries)
    assert_error(await client.get("/api/notifications/deliveries", headers=agent.headers), 403)


async def test_a_job_run_twice_has_one_effect(
    client: httpx.AsyncClient, admin: Any, db: AsyncEngine, tmp_path: Path
) -> None:
    _, hid = await open_handoff(client, admin)
    runtime, _ = runtime_for(db, write_config(tmp_path))
    # A delivery the in-process worker already handled: running it again changes nothing.
    async with db.connect() as conn:
        ids = [r[0] for r in await conn.execute(sa.text("SELECT id FROM notification_deliveries"))]
    await poll(lambda: _all_delivered(db))
    outcomes = await asyncio.gather(
        *(deliver(runtime, uuid.UUID(str(i))) for i in ids for _ in range(3))
    )
    assert set(outcomes) == {"skipped"}
    async with db.connect() as conn:
        count = (await conn.execute(sa.text("SELECT count(*) FROM notifications"))).scalar_one()
    assert count == len(ids)
    del hid


async def _all_delivered(db: AsyncEngine) -> bool:
    async with db.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT status FROM notification_deliveries"))).all()
    return bool(rows) and all(r[0] == "delivered" for r in rows)


async def _make_pending(db: AsyncEngine, **values: Any) -> None:
    sets = ", ".join(f"{k} = :{k}" for k in values)
    stmt = sa.text(f"UPDATE notification_deliveries SET {sets}")
    params = {}
    for key, value in values.items():
        if key in ("next_attempt_at", "lease_until"):
            stmt = stmt.bindparams(sa.bindparam(key, type_=UTCDateTime()))
        params[key] = value
    async with db.begin() as conn:
        await conn.execute(stmt, params)


async def test_sweeper_delivers_what_was_never_enqueued_or_whose_worker_died(
    client: httpx.AsyncClient, admin: Any, db: AsyncEngine, tmp_path: Path
) -> None:
    _, hid = await open_handoff(client, admin)
    await poll(lambda: _all_delivered(db))
    async with db.begin() as conn:
        await conn.execute(sa.text("DELETE FROM notifications"))
    # As if the queue lost the job (Redis flushed) ...
    await _make_pending(
        db, status="pending", attempts=0, next_attempt_at=utcnow() - timedelta(seconds=5)
    )
    runtime, recorder = runtime_for(db, write_config(tmp_path))
    assert await sweep(runtime) >= 1
    ((ids, _, tag),) = recorder.calls
    assert tag.startswith("s")
    assert {await deliver(runtime, i) for i in ids} == {"delivered"}
    # ... and as if a worker was killed mid-send: its lease runs out, the sweeper frees it.
    await _make_pending(
        db,
        status="sending",
        attempts=1,
        lease_until=utcnow() - timedelta(seconds=1),
        next_attempt_at=utcnow() - timedelta(seconds=5),
    )
    recorder.calls.clear()
    await sweep(runtime)
    assert {await deliver(runtime, i) for i in recorder.calls[0][0]} == {"delivered"}
    async with db.connect() as conn:
        notified = (await conn.execute(sa.text("SELECT count(*) FROM notifications"))).scalar_one()
    assert notified == len(ids)  # the second send of each delivery made no second entry
    del hid


async def test_email_retries_then_dead_then_admin_retry_delivers(
    database_url: str, admin: Any, tmp_path: Path
) -> None:
    """SMTP down: attempts back off and the delivery ends dead and visible to admins; once
    the server is up, an admin's retry delivers it."""
    sink = Sink()
    path = write_config(
        tmp_path,
        notifications={
            "notification_types": ["in_app", "email"],
            "email": {"smtp_host": "127.0.0.1", "smtp_port": sink.port},
        },
    )
    app = create_app(make_settings(database_url, config=path))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        _, hid = await open_handoff(client, admin)

        async def email_delivery() -> dict | None:
            r = await client.get(
                "/api/notifications/deliveries",
                params={"handoff_id": hid, "channel": "email"},
                headers=admin.headers,
            )
            found = r.json()["deliveries"]
            return found[0] if found and found[0]["status"] == "dead" else None

        dead = await poll(email_delivery, within=10)
        assert dead["attempts"] == 3
        assert [a["success"] for a in dead["history"]] == [False, False, False]
        assert "Connect" in dead["last_error"] or "connect" in dead["last_error"]
        controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
        controller.start()
        try:
            r = await client.post(
                f"/api/notifications/deliveries/{dead['id']}/retry", headers=admin.headers
            )
            assert r.status_code == 200, r.text

            async def delivered() -> dict | None:
                r = await client.get(
                    f"/api/notifications/deliveries/{dead['id']}", headers=admin.headers
                )
                d: dict = r.json()["delivery"]
                return d if d["status"] == "delivered" else None

            done = await poll(delivered, within=10)
        finally:
            controller.stop()
        assert done["attempts"] == 4
        assert sink.messages[-1]["To"] == "admin@example.com"
        r = await client.post(
            f"/api/notifications/deliveries/{dead['id']}/retry", headers=admin.headers
        )
        assert_error(r, 409)


async def test_sla_breach_escalates_once_and_notifies(
    client: httpx.AsyncClient, admin: Any, db: AsyncEngine, tmp_path: Path
) -> None:
    _, hid = await open_handoff(client, admin)
    async with db.begin() as conn:
        await conn.execute(
            sa.text("UPDATE nectar_bot_handoffs SET accept_due_at = :past").bindparams(
                sa.bindparam("past", type_=UTCDateTime())
            ),
            {"past": utcnow() - timedelta(minutes=1)},
        )
    runtime, recorder = runtime_for(db, write_config(tmp_path))
    assert await check_sla(runtime) == 1
    assert await check_sla(runtime) == 0  # the clock restarted at the new level
    r = await client.get(f"/api/nectar-bots/handoffs/{hid}", headers=admin.headers)
    detail = r.json()
    assert detail["urgency"] == "critical"  # was high
    assert detail["escalation_level"] == 1
    escalated = [e for e in detail["events"] if e["kind"] == "escalated"]
    assert escalated[0]["detail"]["breach"] == "accept"
    assert escalated[0]["detail"]["from_urgency"] == "high"
    assert recorder.calls and recorder.calls[0][0]


async def test_test_notification_reports_each_channel(
    client: httpx.AsyncClient, admin: Any, accounts: Any
) -> None:
    r = await client.post("/api/messaging/test-notification", json={}, headers=admin.headers)
    assert r.status_code == 202, r.text
    sent = r.json()["deliveries"]
    assert [(d["channel"], d["status"]) for d in sent] == [("in_app", "delivered")]
    inbox = await client.get("/api/notifications", headers=admin.headers)
    assert inbox.json()["notifications"][0]["kind"] == "test"
    r = await client.post(
        "/api/messaging/test-notification", json={"channels": ["slack"]}, headers=admin.headers
    )
    assert_error(r, 409)
    agent = await accounts("agent")
    assert_error(await client.post("/api/messaging/test-notification", headers=agent.headers), 403)


async def test_a_follow_up_waits_for_the_earlier_delivery_to_the_same_place(
    client: httpx.AsyncClient, admin: Any, db: AsyncEngine, tmp_path: Path
) -> None:
    """A platform must see the trigger before the resolve: the later delivery waits while
    the earlier one to the same recipient is on its way, and goes once it is done."""
    _, hid = await open_handoff(client, admin)
    await poll(lambda: _all_delivered(db))
    runtime, recorder = runtime_for(db, write_config(tmp_path))
    now = utcnow()
    insert = sa.text(
        "INSERT INTO notification_deliveries (id, handoff_id, event, channel, recipient, "
        "recipient_user_id, data, status, attempts, max_attempts, next_attempt_at, "
        "created_at, updated_at) VALUES (:id, :hid, :event, 'in_app', :rcpt, :uid, '{}', "
        ":status, 0, 3, :due, :created, :created)"
    ).bindparams(
        sa.bindparam("id", type_=sa.Uuid()),
        sa.bindparam("hid", type_=sa.Uuid()),
        sa.bindparam("uid", type_=sa.Uuid()),
        sa.bindparam("due", type_=UTCDateTime()),
        sa.bindparam("created", type_=UTCDateTime()),
    )
    first, second = uuid.uuid4(), uuid.uuid4()
    common = {"hid": uuid.UUID(hid), "rcpt": str(admin.id), "uid": admin.id}
    async with db.begin() as conn:
        await conn.execute(
            insert,
            {
                **common,
                "id": first,
                "event": "handoff.assigned",
                "status": "pending",
                "due": now + timedelta(seconds=2),
                "created": now - timedelta(seconds=2),
            },
        )
        await conn.execute(
            insert,
            {
                **common,
                "id": second,
                "event": "handoff.resolved",
                "status": "pending",
                "due": now,
                "created": now,
            },
        )
    assert await deliver(runtime, second) == "waiting"
    ((ids, delay, _),) = recorder.calls
    assert ids == [second]
    assert delay >= 2  # not a busy loop: after the earlier one's next try
    await _make_pending_one(db, first, next_attempt_at=utcnow() - timedelta(seconds=1))
    assert await deliver(runtime, first) == "delivered"
    assert await deliver(runtime, second) == "delivered"


async def _make_pending_one(db: AsyncEngine, delivery_id: uuid.UUID, **values: Any) -> None:
    async with db.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE notification_deliveries SET next_attempt_at = :due WHERE id = :id"
            ).bindparams(
                sa.bindparam("due", type_=UTCDateTime()), sa.bindparam("id", type_=sa.Uuid())
            ),
            {"due": values["next_attempt_at"], "id": delivery_id},
        )
