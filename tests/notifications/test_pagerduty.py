"""The PagerDuty channel against a local stand-in for the Events API v2 that refuses what
events.pagerduty.com refuses (400 "invalid event") and answers 202 like it."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from nectar.config import NotificationsConfig, PagerDutyConfig, Severity
from nectar.notifications.channels.base import DeliveryFailed, EventType
from nectar.notifications.channels.pagerduty import PagerDutyChannel, pagerduty_severity
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
from tests.receivers import Receiver, Recorded, Scripted

ROUTING_KEY = "R0123456789abcdef0123456789abcde"  # 32 characters, like a real one
assert len(ROUTING_KEY) == 32
ENQUEUE = "/v2/enqueue"
SEVERITIES = {"critical", "error", "warning", "info"}
ACCEPTED = {"status": "success", "message": "Event processed"}


def _invalid(*errors: str) -> tuple[int, Any]:
    return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}


def pagerduty_check(request: Recorded) -> tuple[int, Any] | None:
    """What the Events API v2 refuses."""
    if request.method != "POST" or request.path != ENQUEUE:
        return 404, {"status": "not found"}
    try:
        event = request.json()
    except ValueError:
        return _invalid("Event object is not valid JSON")
    if not isinstance(event, dict):
        return _invalid("Event object is invalid")
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        return _invalid("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        return _invalid("'event_action' is invalid (must be trigger, acknowledge or resolve)")
    dedup_key = event.get("dedup_key")
    if dedup_key is not None and (not isinstance(dedup_key, str) or not 0 < len(dedup_key) <= 255):
        return _invalid("'dedup_key' must be a string of at most 255 characters")
    if action != "trigger":
        return None if dedup_key else _invalid("'dedup_key' is required for " + action)
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return _invalid("'payload' is missing or invalid")
    summary = payload.get("summary")
    if not isinstance(summary, str) or not 0 < len(summary) <= 1024:
        return _invalid("'payload.summary' is missing or longer than 1024 characters")
    if not (isinstance(payload.get("source"), str) and payload["source"]):
        return _invalid("'payload.source' is missing")
    if payload.get("severity") not in SEVERITIES:
        return _invalid("'payload.severity' must be critical, error, warning or info")
    if "timestamp" in payload:
        try:
            datetime.fromisoformat(payload["timestamp"])
        except (TypeError, ValueError):
            return _invalid("'payload.timestamp' is not ISO 8601")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
        return _invalid("'payload.custom_details' must be an object")
    for link in event.get("links", []):
        if not isinstance(link, dict) or not isinstance(link.get("href"), str):
            return _invalid("'links' must have an href")
    return None


@pytest.fixture
async def pagerduty() -> Any:
    async with platform_receiver(pagerduty_check, Scripted(202, ACCEPTED)) as receiver:
        yield receiver


def channel(
    url: str, guard: NetGuard, client: httpx.AsyncClient, key: str = ROUTING_KEY, **config: Any
) -> PagerDutyChannel:
    settings = PagerDutyConfig(integration_key=SecretStr(key), events_url=url, **config)
    return PagerDutyChannel(settings, client=client, guard=guard)


async def send(receiver: Receiver, *deliveries: Any, **config: Any) -> list[Any]:
    results = []
    async with http_client() as client:
        pd = channel(receiver.url + ENQUEUE, LOCAL, client, **config)
        for d in deliveries:
            results.append(await pd.send(d))
    assert receiver.refused == [], receiver.refused
    return results


def events(receiver: Receiver) -> list[dict[str, Any]]:
    return [r.json() for r in receiver.requests]


async def test_new_handoff_triggers_an_alert(pagerduty: Receiver) -> None:
    handoff = view()
    pagerduty.then(202, {**ACCEPTED, "dedup_key": handoff.id})
    (result,) = await send(pagerduty, delivery(EventType.created, handoff, "pagerduty"))
    assert result.status_code == 202
    assert result.external_refs == {"pagerduty_dedup_key": handoff.id}
    (event,) = events(pagerduty)
    assert pagerduty.requests[0].headers["content-type"] == "application/json"
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == handoff.id
    payload = event["payload"]
    assert payload["summary"] == (
        "New handoff from Support (high urgency): The customer was charged twice for "
        "order 1042 and wants a refund."
    )
    assert payload["source"] == "nectar.example.com"
    assert payload["severity"] == "critical"
    assert payload["component"] == "Support"
    assert payload["class"] == "explicit request"
    assert payload["timestamp"] == "2025-03-04T10:15:00+00:00"
    details = payload["custom_details"]
    assert details["handoff_id"] == handoff.id
    assert details["urgency"] == "high"
    assert details["reason"] == "explicit request"
    assert details["user"] == "Ada"
    assert details["last_messages"][-1] == "user: I want to talk to a human."
    assert event["links"] == [{"href": handoff.url, "text": "Open the handoff in Nectar"}]
    assert event["client"] == "Nectar"
    assert event["client_url"] == handoff.url


async def test_the_lifecycle_hits_one_alert(pagerduty: Receiver) -> None:
    handoff = view(urgency="medium", severity="warning")
    escalated = replace(handoff, urgency="critical", severity="critical")
    assigned = replace(escalated, status="assigned", assignee_name="Alice")
    resolved = replace(assigned, status="resolved", resolution_notes="Done")
    results = await send(
        pagerduty,
        delivery(EventType.created, handoff, "pagerduty"),
        delivery(
            EventType.escalated,
            escalated,
            "pagerduty",
            {"breach": "resolve", "from_urgency": "medium", "to_urgency": "critical"},
        ),
        delivery(EventType.assigned, assigned, "pagerduty"),
        delivery(EventType.resolved, resolved, "pagerduty"),
    )
    sent = events(pagerduty)
    assert [e["event_action"] for e in sent] == ["trigger", "trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in sent} == {handoff.id}
    assert [e["payload"]["severity"] for e in sent[:2]] == ["warning", "critical"]
    assert sent[1]["payload"]["summary"].startswith(
        "Handoff from Support escalated to critical urgency (was medium): "
    )
    assert sent[1]["payload"]["custom_details"]["escalated_from"] == "medium"
    assert sent[1]["payload"]["custom_details"]["sla_breach"] == "resolve"
    assert sent[1]["payload"]["summary"].startswith(
        "Handoff from Support escalated to critical urgency (was medium): not resolved in time: "
    )
    assert all(r.external_refs == {"pagerduty_dedup_key": handoff.id} for r in results)


async def test_cancelled_resolves_the_alert(pagerduty: Receiver) -> None:
    handoff = view(status="cancelled")
    await send(pagerduty, delivery(EventType.cancelled, handoff, "pagerduty"))
    assert events(pagerduty) == [
        {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": handoff.id}
    ]


async def test_a_retried_trigger_uses_the_same_dedup_key(pagerduty: Receiver) -> None:
    """PagerDuty folds the second trigger into the open alert: nobody is paged twice."""
    created = delivery(EventType.created, view(), "pagerduty")
    pagerduty.then(500, {"status": "error"})
    async with http_client() as client:
        pd = channel(pagerduty.url + ENQUEUE, LOCAL, client)
        error = await failure(pd.send(created))
        assert error.retriable
        await pd.send(created)
    first, second = events(pagerduty)
    assert first == second


@pytest.mark.parametrize(
    ("urgency", "expected"),
    [("low", "info"), ("medium", "warning"), ("high", "critical"), ("critical", "critical")],
)
async def test_severity_follows_the_seed_urgency_mapping(
    pagerduty: Receiver, urgency: str, expected: str
) -> None:
    severity = NotificationsConfig().severity(urgency)
    await send(
        pagerduty,
        delivery(EventType.created, view(urgency=urgency, severity=severity), "pagerduty"),
    )
    assert events(pagerduty)[0]["payload"]["severity"] == expected


async def test_a_custom_mapping_and_an_unknown_severity(pagerduty: Receiver) -> None:
    mapping: dict[Any, Severity] = {"high": "error", "low": "warning"}
    custom = NotificationsConfig(urgency_levels=mapping)
    await send(
        pagerduty,
        delivery(EventType.created, view(urgency="high", severity=custom.severity("high")), "pd"),
        # Not a PagerDuty severity: the configured default is used.
        delivery(EventType.created, view(severity="urgent!"), "pd"),
        severity="error",
    )
    assert [e["payload"]["severity"] for e in events(pagerduty)] == ["error", "error"]
    assert pagerduty_severity("info", "warning") == "info"
    assert pagerduty_severity("", "warning") == "warning"


async def test_long_summaries_fit(pagerduty: Receiver) -> None:
    await send(pagerduty, delivery(EventType.created, view(summary="word " * 2000), "pd"))
    summary = events(pagerduty)[0]["payload"]["summary"]
    assert len(summary) == 1024 and summary.endswith("…")


async def test_test_notification_triggers_then_resolves(pagerduty: Receiver) -> None:
    d = delivery(EventType.test, None, "pagerduty")
    (result,) = await send(pagerduty, d, severity="info")
    trigger, resolve = events(pagerduty)
    key = f"nectar-test-{d.id}"
    assert (trigger["event_action"], trigger["dedup_key"]) == ("trigger", key)
    assert trigger["payload"]["summary"].startswith("Nectar test notification: ")
    assert trigger["payload"]["severity"] == "info"
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": key}
    assert result.status_code == 202
    assert result.external_refs == {}  # nothing to remember: there is no handoff


async def test_a_test_whose_resolve_fails_is_retried_whole(pagerduty: Receiver) -> None:
    d = delivery(EventType.test, None, "pagerduty")
    pagerduty.then(202, ACCEPTED).then(503, {"status": "unavailable"})
    async with http_client() as client:
        pd = channel(pagerduty.url + ENQUEUE, LOCAL, client)
        error = await failure(pd.send(d))
        assert error.retriable
        await pd.send(d)
    sent = events(pagerduty)
    assert [e["event_action"] for e in sent] == ["trigger", "resolve", "trigger", "resolve"]
    assert {e["dedup_key"] for e in sent} == {f"nectar-test-{d.id}"}


async def test_an_invalid_event_is_permanent_and_the_key_stays_secret(
    pagerduty: Receiver,
) -> None:
    short = ROUTING_KEY[:31]
    async with http_client() as client:
        pd = channel(pagerduty.url + ENQUEUE, LOCAL, client, key=short)
        error = await failure(pd.send(delivery(EventType.created, view(), "pagerduty")))
    assert (error.retriable, error.status_code) == (False, 400)
    assert "routing_key" in str(error) and short not in str(error)


async def test_failures_are_mapped_and_the_key_stays_secret(
    pagerduty: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    await assert_failures_mapped(
        channel,
        pagerduty,
        pagerduty.url + ENQUEUE,
        ROUTING_KEY,
        delivery(EventType.created, view(), "pagerduty"),
        caplog,
    )


async def test_not_configured_is_permanent() -> None:
    async with http_client() as client:
        pd = PagerDutyChannel(PagerDutyConfig(), client=client, guard=LOCAL)
        with pytest.raises(DeliveryFailed) as caught:
            await pd.send(delivery(EventType.created, view(), "pagerduty"))
    assert not caught.value.retriable
