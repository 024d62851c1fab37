"""The in-app inbox: the channel that fills it, the API that reads and clears it, and the live
stream (a real HTTP server on 127.0.0.1; in-process events and Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from nectar.app import create_app
from nectar.deps import Services
from nectar.events import RedisBus
from nectar.notifications.channels.base import Delivery, DeliveryFailed, EventType, HandoffView
from nectar.notifications.channels.in_app import InAppChannel
from tests.chat.test_stream import serving
from tests.conftest import Account, make_settings
from tests.helpers import assert_error, create_bot


def services_of(app: FastAPI) -> Services:
    services: Services = app.state.services
    return services


def channel_of(app: FastAPI) -> InAppChannel:
    services = services_of(app)
    return InAppChannel(services.sessions, services.events)


def delivery(
    user: Account | uuid.UUID | str,
    *,
    event: EventType = EventType.test,
    handoff: HandoffView | None = None,
    delivery_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> Delivery:
    recipient = str(user.id if isinstance(user, Account) else user)
    delivery_id = delivery_id or str(uuid.uuid4())
    return Delivery(
        id=delivery_id,
        channel="in_app",
        event=event,
        handoff=handoff,
        recipient=recipient,
        attempt=1,
        idempotency_key=delivery_id,
        data=data if data is not None else {"message": f"note {delivery_id[:8]}"},
    )


async def open_handoff(client: httpx.AsyncClient, admin: Account, bot_name: str) -> HandoffView:
    """A real handoff (opened by hand through the API) and the view a worker would build."""
    bot = await create_bot(client, admin, name=bot_name, handoff_enabled=False)
    r = await client.post(
        f"/api/nectar-bots/{bot['id']}/chat",
        json={"message": "I need a refund for order 1234"},
        headers={"X-API-Key": bot["api_key"]},
    )
    assert r.status_code == 200, r.text
    cid = r.json()["conversation_id"]
    r = await client.post(
        f"/api/nectar-bots/conversations/{cid}/handoff",
        json={"urgency": "high", "note": "Refund over the limit"},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    h = r.json()["handoff"]
    return HandoffView(
        id=h["id"],
        bot_id=h["bot_id"],
        bot_name=bot_name,
        conversation_id=h["conversation_id"],
        status=h["status"],
        reason=h["reason"],
        urgency=h["urgency"],
        severity="critical",
        summary=h["summary"] or "Refund over the limit",
        created_at=h["created_at"],
        url=f"http://testserver/api/nectar-bots/handoffs/{h['id']}",
    )


async def inbox(client: httpx.AsyncClient, account: Account, query: str = "") -> dict[str, Any]:
    r = await client.get(f"/api/notifications{query}", headers=account.headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def rows_for_delivery(engine: AsyncEngine, delivery_id: str) -> int:
    async with engine.connect() as conn:
        count = await conn.execute(
            sa.text("SELECT count(*) FROM notifications WHERE delivery_id = :d").bindparams(
                sa.bindparam("d", type_=sa.Uuid())
            ),
            {"d": uuid.UUID(delivery_id)},
        )
        return int(count.scalar_one())


# --- the channel ----------------------------------------------------------------------------


async def test_a_new_handoff_lands_in_the_inbox(
    app: FastAPI, client: httpx.AsyncClient, admin: Account, accounts: Any
) -> None:
    agent = await accounts("agent")
    handoff = await open_handoff(client, admin, "Billing Bot")
    job = delivery(agent, event=EventType.created, handoff=handoff, data={})

    result = await channel_of(app).send(job)

    body = await inbox(client, agent)
    assert body["unread_count"] == 1
    assert body["pagination"]["total"] == 1
    [note] = body["notifications"]
    assert note["title"] == "New handoff (high): Billing Bot"
    assert note["body"] == handoff.summary
    assert note["kind"] == "handoff.created"
    assert note["urgency"] == "high"
    assert note["handoff_id"] == handoff.id
    assert note["read"] is False and note["read_at"] is None
    assert note["data"]["url"] == handoff.url
    assert note["data"]["conversation_id"] == handoff.conversation_id
    assert note["id"] in result.detail


async def test_follow_up_titles(
    app: FastAPI, client: httpx.AsyncClient, admin: Account, accounts: Any
) -> None:
    agent = await accounts("agent")
    handoff = await open_handoff(client, admin, "Support")
    channel = channel_of(app)
    views = {
        EventType.assigned: _replace(handoff, assignee_name="Ann", status="assigned"),
        EventType.escalated: _replace(handoff, urgency="critical"),
        EventType.resolved: _replace(handoff, status="resolved", resolution_notes="Refunded."),
    }
    for event, view in views.items():
        data = {"previous_urgency": "high"} if event is EventType.escalated else {}
        await channel.send(delivery(agent, event=event, handoff=view, data=data))

    notes = (await inbox(client, agent))["notifications"]
    assert [n["title"] for n in notes] == [
        "Handoff resolved: Support",
        "Handoff escalated to critical: Support",
        "Handoff accepted by Ann: Support",
    ]
    assert notes[0]["body"].startswith("Resolution notes: Refunded.")
    assert notes[1]["body"].startswith("Urgency raised from high to critical.")


def _replace(view: HandoffView, **changes: Any) -> HandoffView:
    return dataclasses.replace(view, **changes)


async def test_a_delivery_sent_twice_makes_one_notification(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncEngine, accounts: Any
) -> None:
    agent = await accounts("agent")
    channel = channel_of(app)
    job = delivery(agent)
    first = await channel.send(job)
    again = await channel.send(job)
    assert first.detail == again.detail
    assert await rows_for_delivery(db, job.id) == 1

    # Two workers racing on the same delivery: still one.
    racing = delivery(agent)
    results = await asyncio.gather(channel.send(racing), channel.send(racing))
    assert results[0].detail == results[1].detail
    assert await rows_for_delivery(db, racing.id) == 1
    assert (await inbox(client, agent))["pagination"]["total"] == 2


async def test_a_recipient_that_is_not_a_user_fails_for_good(app: FastAPI) -> None:
    channel = channel_of(app)
    with pytest.raises(DeliveryFailed) as gone:
        await channel.send(delivery(uuid.uuid4()))
    assert gone.value.retriable is False
    with pytest.raises(DeliveryFailed) as nonsense:
        await channel.send(delivery("someone@example.com"))
    assert nonsense.value.retriable is False


# --- the API --------------------------------------------------------------------------------


async def test_each_user_reads_and_clears_their_own_inbox(
    app: FastAPI, client: httpx.AsyncClient, accounts: Any
) -> None:
    agent, member = await accounts("agent"), await accounts("member")
    channel = channel_of(app)
    for text in ("one", "two", "three"):
        await channel.send(delivery(agent, data={"message": text}))
    await channel.send(delivery(member, data={"message": "for the member"}))

    page = await inbox(client, agent, "?per_page=2")
    assert [n["body"] for n in page["notifications"]] == ["three", "two"]
    assert page["pagination"] == {
        "page": 1,
        "pages": 2,
        "per_page": 2,
        "total": 3,
        "has_next": True,
        "has_prev": False,
    }
    assert page["unread_count"] == 3
    second = await inbox(client, agent, "?per_page=2&page=2")
    assert [n["body"] for n in second["notifications"]] == ["one"]

    newest = page["notifications"][0]
    r = await client.post(f"/api/notifications/{newest['id']}/read", headers=agent.headers)
    assert r.status_code == 200, r.text
    read = r.json()
    assert read["notification"]["read"] is True
    assert read["unread_count"] == 2
    r = await client.post(f"/api/notifications/{newest['id']}/read", headers=agent.headers)
    assert r.json()["notification"]["read_at"] == read["notification"]["read_at"]

    unread = await inbox(client, agent, "?unread=true")
    assert [n["body"] for n in unread["notifications"]] == ["two", "one"]
    assert unread["pagination"]["total"] == 2
    everything = await inbox(client, agent)
    assert everything["pagination"]["total"] == 3
    assert [n["read"] for n in everything["notifications"]] == [True, False, False]

    r = await client.post("/api/notifications/read-all", headers=agent.headers)
    assert r.status_code == 200, r.text
    assert r.json()["updated"] == 2
    r = await client.post("/api/notifications/read-all", headers=agent.headers)
    assert r.json()["updated"] == 0
    assert (await inbox(client, agent, "?unread=true"))["notifications"] == []

    # The member's inbox is untouched and invisible to the agent.
    theirs = await inbox(client, member)
    assert [n["body"] for n in theirs["notifications"]] == ["for the member"]
    assert theirs["unread_count"] == 1
    other_id = theirs["notifications"][0]["id"]
    r = await client.post(f"/api/notifications/{other_id}/read", headers=agent.headers)
    assert_error(r, 404, "notification_not_found")
    assert (await inbox(client, member))["unread_count"] == 1
    r = await client.post(f"/api/notifications/{uuid.uuid4()}/read", headers=agent.headers)
    assert_error(r, 404, "notification_not_found")


async def test_every_role_has_an_inbox_and_anonymous_callers_none(
    client: httpx.AsyncClient, admin: Account, accounts: Any
) -> None:
    for account in (admin, await accounts("agent"), await accounts("member")):
        assert (await inbox(client, account))["pagination"]["total"] >= 0
    some_id = uuid.uuid4()
    for method, url in (
        ("GET", "/api/notifications"),
        ("GET", "/api/notifications?unread=true"),
        ("POST", f"/api/notifications/{some_id}/read"),
        ("POST", "/api/notifications/read-all"),
        ("GET", "/api/notifications/stream"),
    ):
        assert_error(await client.request(method, url), 401)
    r = await client.get("/api/notifications", headers={"Authorization": "Bearer nope"})
    assert_error(r, 401)
    r = await client.post("/api/notifications/not-a-uuid/read", headers=admin.headers)
    assert_error(r, 422)


# --- the live stream ------------------------------------------------------------------------


@dataclass
class Event:
    event: str
    id: str | None
    data: dict[str, Any]


@contextlib.asynccontextmanager
async def listening(
    client: httpx.AsyncClient, url: str, **kwargs: Any
) -> AsyncIterator[asyncio.Queue[Event]]:
    """Follow an SSE endpoint in the background; events arrive on the queue."""
    queue: asyncio.Queue[Event] = asyncio.Queue()
    status: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def read() -> None:
        async with client.stream("GET", url, **kwargs) as response:
            status.set_result(response.status_code)
            assert response.headers["content-type"].startswith("text/event-stream")
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if not line:
                    if "data" in fields:
                        await queue.put(
                            Event(
                                fields.get("event", "message"),
                                fields.get("id"),
                                json.loads(fields["data"]),
                            )
                        )
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")

    task = asyncio.create_task(read())
    try:
        assert await asyncio.wait_for(status, 10) == 200
        yield queue
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def next_event(queue: asyncio.Queue[Event]) -> Event:
    return await asyncio.wait_for(queue.get(), 10)


async def test_the_stream_sends_unread_ones_then_new_ones_live(
    app: FastAPI, client: httpx.AsyncClient, accounts: Any
) -> None:
    agent = await accounts("agent")
    channel = channel_of(app)
    await channel.send(delivery(agent, data={"message": "already read"}))
    await client.post("/api/notifications/read-all", headers=agent.headers)
    await channel.send(delivery(agent, data={"message": "waiting"}))

    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
        url = f"/api/notifications/stream?access_token={agent.token}"
        async with listening(http, url) as events:
            backlog = await next_event(events)
            assert (backlog.event, backlog.data["body"]) == ("notification", "waiting")
            assert backlog.id == backlog.data["id"]

            # Subscribed before the backlog was read: this one arrives live.
            live_job = delivery(agent, data={"message": "live"})
            await channel.send(live_job)
            live = await next_event(events)
            assert (live.event, live.data["body"], live.data["read"]) == (
                "notification",
                "live",
                False,
            )

            # A retried delivery announces itself again; the stream shows it once.
            await channel.send(live_job)
            await channel.send(delivery(agent, data={"message": "after the retry"}))
            assert (await next_event(events)).data["body"] == "after the retry"

            # Reading in another tab tells this one.
            r = await http.post(f"/api/notifications/{live.id}/read", headers=agent.headers)
            assert r.status_code == 200
            read = await next_event(events)
            assert (read.event, read.id, read.data) == ("read", None, {"ids": [live.id]})
            await http.post("/api/notifications/read-all", headers=agent.headers)
            assert (await next_event(events)).data == {"all": True}


async def test_a_reconnect_resumes_after_the_last_event_id(
    app: FastAPI, client: httpx.AsyncClient, accounts: Any
) -> None:
    agent, member = await accounts("agent"), await accounts("member")
    channel = channel_of(app)
    for text in ("one", "two", "three"):
        await channel.send(delivery(agent, data={"message": text}))
    notes = (await inbox(client, agent))["notifications"]
    one, two = notes[2]["id"], notes[1]["id"]
    # "two" was read: a resume still sends it (it came after the last event seen).
    await client.post(f"/api/notifications/{two}/read", headers=agent.headers)
    await channel.send(delivery(member, data={"message": "not yours"}))

    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
        headers = {**agent.headers, "Last-Event-ID": one}
        async with listening(http, "/api/notifications/stream", headers=headers) as events:
            got = [await next_event(events), await next_event(events)]
            assert [e.data["body"] for e in got] == ["two", "three"]
            assert got[0].data["read"] is True
        async with listening(
            http, f"/api/notifications/stream?after={two}", headers=agent.headers
        ) as events:
            assert (await next_event(events)).data["body"] == "three"
            await channel.send(delivery(agent, data={"message": "four"}))
            assert (await next_event(events)).data["body"] == "four"


async def test_a_notification_sent_through_redis_reaches_the_app_s_stream(
    database_url: str, admin: Account, accounts: Any, redis_url: str, redis_prefix: str
) -> None:
    """The worker is another process: it publishes through Redis, the API streams it."""
    agent = await accounts("agent")
    settings = make_settings(database_url, redis_url=redis_url, redis_prefix=redis_prefix)
    app = create_app(settings)
    worker_redis = Redis.from_url(redis_url)
    try:
        async with app.router.lifespan_context(app), serving(app) as base:
            worker = InAppChannel(services_of(app).sessions, RedisBus(worker_redis, redis_prefix))
            await worker.send(delivery(agent, data={"message": "before"}))
            async with (
                httpx.AsyncClient(base_url=base, timeout=10) as http,
                listening(http, f"/api/notifications/stream?access_token={agent.token}") as events,
            ):
                assert (await next_event(events)).data["body"] == "before"
                await worker.send(delivery(agent, data={"message": "through redis"}))
                live = await next_event(events)
                assert (live.event, live.data["body"]) == ("notification", "through redis")
    finally:
        await worker_redis.aclose()
