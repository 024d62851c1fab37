"""The generic webhook channel against local receivers that verify every request the way a
Standard Webhooks consumer does, with a verifier written here from the spec (not the
channel's own signing code): base64 HMAC-SHA256 over "{webhook-id}.{webhook-timestamp}.{body}"
keyed with the decoded ``whsec_`` secret, and timestamps older than five minutes refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar

import httpx
import pytest
from pydantic import SecretStr

from nectar.config import WebhookConfig, WebhookEndpoint
from nectar.notifications.channels.base import Channel, Delivery, EventType
from nectar.notifications.channels.webhook import WebhookChannel
from nectar.notifications.netguard import NetGuard
from tests.notifications.platforms import (
    LOCAL,
    assert_failures_mapped,
    delivery,
    failure,
    http_client,
    view,
)
from tests.notifications.platforms import receiver as platform_receiver
from tests.receivers import Receiver, Recorded

SECRET = "whsec_" + base64.b64encode(b"nectar-test-signing-key-0123456789").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"someone-else-entirely-9876543210").decode()
TOLERANCE = 5 * 60


class Unverified(Exception):
    pass


def verify(secret: str, headers: dict[str, str], body: bytes, now: float | None = None) -> None:
    """A Standard Webhooks verifier, from the spec."""
    try:
        message_id = headers["webhook-id"]
        timestamp = headers["webhook-timestamp"]
        signatures = headers["webhook-signature"]
    except KeyError as missing:
        raise Unverified(f"missing header {missing}") from None
    if abs((time.time() if now is None else now) - int(timestamp)) > TOLERANCE:
        raise Unverified("timestamp outside the tolerance")
    key = base64.b64decode(secret.split("_", 1)[1])
    content = message_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    for signature in signatures.split(" "):
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return
    raise Unverified("no matching signature")


def consumer(secret: str) -> Any:
    def check(request: Recorded) -> tuple[int, Any] | None:
        if request.method != "POST":
            return 405, {"error": "method not allowed"}
        if request.headers.get("content-type") != "application/json":
            return 415, {"error": "JSON only"}
        try:
            verify(secret, request.headers, request.body)
        except Unverified as why:
            return 401, {"error": str(why)}
        return None

    return check


@dataclass
class Site:
    """A consumer's receiver and the endpoint URL it was configured under."""

    receiver: Receiver
    url: str


@pytest.fixture(scope="module")
async def consumer_server() -> AsyncIterator[Receiver]:
    async with platform_receiver(consumer(SECRET)) as receiver:
        yield receiver


@pytest.fixture
def site(consumer_server: Receiver) -> Site:
    return Site(fresh(consumer_server), f"{consumer_server.url}/hooks/nectar?source=prod")


def fresh(receiver: Receiver) -> Receiver:
    """One receiver serves the module (starting one per test costs more than the test):
    each test starts with nothing recorded and nothing scripted."""
    receiver.requests.clear()
    receiver.refused.clear()
    receiver._script.clear()
    receiver.arrived.clear()
    return receiver


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with http_client() as made:
        yield made


def config(*endpoints: tuple[str, str, list[str]]) -> WebhookConfig:
    return WebhookConfig(
        endpoints=[
            WebhookEndpoint(url=url, secret=SecretStr(secret), event_types=types)
            for url, secret, types in endpoints
        ]
    )


def channel_for(url: str, client: httpx.AsyncClient, **kwargs: Any) -> WebhookChannel:
    return WebhookChannel(config((url, SECRET, [])), client=client, guard=LOCAL, **kwargs)


def to(url: str, event: EventType, handoff: Any = None, **data: Any) -> Delivery:
    if handoff is None and event is not EventType.test:
        handoff = view()
    return replace(delivery(event, handoff, "webhook", data), recipient=url)


async def test_a_new_handoff_is_posted_signed(site: Site, client: httpx.AsyncClient) -> None:
    handoff = view(summary="Ada wants her last two invoices refunded.")
    sample = to(site.url, EventType.created, handoff)
    result = await channel_for(site.url, client).send(sample)

    assert result.status_code == 200
    [sent] = site.receiver.requests
    assert (sent.path, sent.query) == ("/hooks/nectar", "source=prod")
    assert sent.headers["webhook-id"] == sample.idempotency_key
    assert abs(int(sent.headers["webhook-timestamp"]) - time.time()) < 5
    assert sent.headers["webhook-signature"].startswith("v1,")
    body = sent.json()
    assert body["type"] == "handoff.created"
    datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    data = body["data"]
    assert data["id"] == handoff.id
    assert data["url"] == handoff.url
    assert (data["urgency"], data["severity"], data["reason"]) == (
        "high",
        "critical",
        "explicit_request",
    )
    assert data["summary"] == "Ada wants her last two invoices refunded."
    assert data["transcript"][-1] == {"role": "user", "content": "I want to talk to a human."}


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (EventType.created, "handoff.created"),
        (EventType.assigned, "handoff.assigned"),
        (EventType.resolved, "handoff.resolved"),
        (EventType.escalated, "handoff.escalated"),
        (EventType.cancelled, "handoff.cancelled"),
        (EventType.test, "nectar.test"),
    ],
)
async def test_every_event_type(
    site: Site, client: httpx.AsyncClient, event: EventType, expected: str
) -> None:
    await channel_for(site.url, client).send(to(site.url, event))
    body = site.receiver.requests[0].json()
    assert body["type"] == expected
    if event is EventType.test:
        assert body["data"]["test"] is True and body["data"]["message"]
    else:
        assert body["data"]["bot_name"] == "Support"


async def test_the_event_time_is_used_when_known(site: Site, client: httpx.AsyncClient) -> None:
    occurred = "2025-03-04T10:20:00.123Z"
    await channel_for(site.url, client).send(to(site.url, EventType.resolved, occurred_at=occurred))
    assert site.receiver.requests[0].json()["timestamp"] == occurred


async def test_a_retry_keeps_the_webhook_id(site: Site, client: httpx.AsyncClient) -> None:
    channel = channel_for(site.url, client)
    sample = to(site.url, EventType.assigned, assignee_name="Grace")

    site.receiver.then(500, "try later")
    error = await failure(channel.send(sample))
    assert (error.retriable, error.status_code) == (True, 500)
    await channel.send(replace(sample, attempt=2))

    first, second = site.receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == sample.idempotency_key
    for sent in (first, second):
        verify(SECRET, sent.headers, sent.body)


async def test_a_sender_with_a_stale_clock_is_refused(
    site: Site, client: httpx.AsyncClient
) -> None:
    ten_minutes_ago = time.time() - 600
    channel = channel_for(site.url, client, clock=lambda: ten_minutes_ago)
    error = await failure(channel.send(to(site.url, EventType.created)))
    assert (error.retriable, error.status_code) == (False, 401)
    assert "timestamp" in str(error)
    assert site.receiver.requests == [] and len(site.receiver.refused) == 1


async def test_the_verifier_refuses_replays_and_tampering(
    site: Site, client: httpx.AsyncClient
) -> None:
    """The consumer check is only worth something if it can say no."""
    await channel_for(site.url, client).send(to(site.url, EventType.created))
    sent = site.receiver.requests[0]
    verify(SECRET, sent.headers, sent.body)
    with pytest.raises(Unverified, match="tolerance"):
        verify(SECRET, sent.headers, sent.body, now=time.time() + TOLERANCE + 60)
    with pytest.raises(Unverified, match="signature"):
        verify(SECRET, sent.headers, sent.body.replace(b"high", b"low!"))
    with pytest.raises(Unverified, match="signature"):
        verify(SECRET, {**sent.headers, "webhook-id": "another-id"}, sent.body)
    with pytest.raises(Unverified, match="signature"):
        verify(OTHER_SECRET, sent.headers, sent.body)


async def test_each_endpoint_is_signed_with_its_own_secret(client: httpx.AsyncClient) -> None:
    async with (
        platform_receiver(consumer(SECRET)) as first,
        platform_receiver(consumer(OTHER_SECRET)) as second,
    ):
        settings = config((first.url, SECRET, []), (second.url, OTHER_SECRET, []))
        channel = WebhookChannel(settings, client=client, guard=LOCAL)
        for receiver in (first, second):
            await channel.send(to(receiver.url, EventType.created))
        assert len(first.requests) == len(second.requests) == 1

        # A consumer holding a different secret than ours refuses us.
        mixed = config((first.url, OTHER_SECRET, []))
        error = await failure(
            WebhookChannel(mixed, client=client, guard=LOCAL).send(to(first.url, EventType.created))
        )
        assert (error.retriable, error.status_code) == (False, 401)


async def test_an_endpoint_gets_only_the_event_types_it_asked_for(
    client: httpx.AsyncClient,
) -> None:
    settings = config(
        ("https://a.example.com/hook", SECRET, ["handoff.created", "handoff.resolved"]),
        ("https://b.example.com/hook", SECRET, []),
        ("https://c.example.com/hook", SECRET, ["escalated"]),
    )
    channel = WebhookChannel(settings, client=client, guard=LOCAL)
    assert channel.wants("https://a.example.com/hook", EventType.created)
    assert channel.wants("https://a.example.com/hook", EventType.resolved)
    assert not channel.wants("https://a.example.com/hook", EventType.assigned)
    assert channel.wants("https://a.example.com/hook", EventType.test)  # tests go everywhere
    assert all(channel.wants("https://b.example.com/hook", event) for event in EventType)
    assert channel.wants("https://c.example.com/hook", EventType.escalated)
    assert not channel.wants("https://c.example.com/hook", EventType.created)
    assert not channel.wants("https://unknown.example.com/hook", EventType.created)


async def test_an_endpoint_that_is_no_longer_configured_fails_for_good(
    site: Site, client: httpx.AsyncClient
) -> None:
    channel = channel_for(site.url, client)
    error = await failure(channel.send(to(f"{site.receiver.url}/elsewhere", EventType.created)))
    assert not error.retriable and "no such endpoint" in str(error)
    assert site.receiver.requests == [] and site.receiver.refused == []


async def test_a_malformed_secret_fails_for_good_and_is_never_shown(
    site: Site, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    broken = "whsec_not*base64!secret"
    channel = WebhookChannel(config((site.url, broken, [])), client=client, guard=LOCAL)
    error = await failure(channel.send(to(site.url, EventType.created)))
    assert not error.retriable and "base64" in str(error)
    assert broken not in str(error) and "not*base64" not in caplog.text
    assert site.receiver.requests == [] and site.receiver.refused == []


async def test_failures_are_mapped_and_the_secret_never_shown(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    # The shared checks move the URL (a dead port, a private host): the delivery follows,
    # as the outbox addresses each webhook delivery to its endpoint's URL.
    @dataclass
    class Addressed:
        channel: WebhookChannel
        url: str
        name: ClassVar[str] = "webhook"
        external: ClassVar[bool] = True

        async def send(self, sample: Delivery) -> Any:
            return await self.channel.send(replace(sample, recipient=self.url))

        async def aclose(self) -> None:
            await self.channel.aclose()

    def make(url: str, guard: NetGuard, client: httpx.AsyncClient) -> Channel:
        made = WebhookChannel(config((url, SECRET, [])), client=client, guard=guard)
        return Addressed(made, url)

    sample = to(site.url, EventType.created)
    await assert_failures_mapped(make, site.receiver, site.url, SECRET, sample, caplog)
    key = SECRET.removeprefix("whsec_")
    assert key not in caplog.text


async def test_nothing_secret_or_addressed_is_logged(
    site: Site, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    channel = channel_for(site.url, client)
    await channel.send(to(site.url, EventType.created))
    site.receiver.then(403, {"error": "forbidden"})
    error = await failure(channel.send(to(site.url, EventType.resolved)))
    assert (error.retriable, error.status_code) == (False, 403)
    key = SECRET.removeprefix("whsec_")
    assert SECRET not in caplog.text and key not in caplog.text
    assert "source=prod" not in str(error)  # errors name the host, not the path or query
    body = json.loads(site.receiver.requests[0].body)
    assert SECRET not in json.dumps(body)
