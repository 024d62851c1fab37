"""PagerDuty: alert events through the Events API v2.

A new handoff ``trigger``s an alert, an escalation triggers it again with the new severity,
accepting ``acknowledge``s it, and resolving or cancelling ``resolve``s it. The dedup_key is
the handoff id, so every follow-up reaches the same alert and a retried trigger is folded
into the open alert instead of paging twice.

PagerDuty's own rules worth knowing: a trigger for an *acknowledged* alert is logged on it
but pages nobody; once an alert is resolved, a trigger with the same key opens a new alert
and acknowledge/resolve are dropped. So deliveries of one handoff must go out in order.

A test notification triggers an alert with dedup_key ``nectar-test-<delivery id>`` at the
configured default severity and resolves it right away: on-call sees that paging works and
nothing is left open. A retry repeats both (the trigger folds into the open test alert).

PagerDuty answers 202 ``{"status": "success", "dedup_key": ...}``; 400 means the event is
invalid (permanent), 429 throttled and 5xx are retried. The integration key is the
credential: it is sent in the body only and never appears in an error or a log line.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from nectar.config import PagerDutyConfig
from nectar.notifications.channels.base import (
    Delivery,
    DeliveryFailed,
    EventType,
    HandoffView,
    SendResult,
)
from nectar.notifications.channels.http import HttpChannel, post_json
from nectar.notifications.channels.wording import (
    TEST_TEXT,
    TEST_TITLE,
    actor,
    assignee,
    breach,
    clip,
    headline,
    humanize,
    opened_at,
    previous_urgency,
    quoted_messages,
    require_handoff,
)

SEVERITIES = ("critical", "error", "warning", "info")
SUMMARY_CHARS = 1024
DETAIL_CHARS = 4000
CLIENT = "Nectar"
TEST_DEDUP_PREFIX = "nectar-test-"
REF_KEY = "pagerduty_dedup_key"

_ACTIONS = {
    EventType.created: "trigger",
    EventType.escalated: "trigger",
    EventType.assigned: "acknowledge",
    EventType.resolved: "resolve",
    EventType.cancelled: "resolve",
}


def pagerduty_severity(severity: str, default: str) -> str:
    """Our severity (from the urgency mapping) when PagerDuty knows it, else the default."""
    return severity if severity in SEVERITIES else default


def _source(handoff: HandoffView) -> str:
    """The Nectar instance the alert comes from: the host of the handoff's link."""
    return urlsplit(handoff.url).hostname or "nectar"


def _details(delivery: Delivery, handoff: HandoffView) -> dict[str, Any]:
    details: dict[str, Any] = {
        "handoff_id": handoff.id,
        "bot": handoff.bot_name,
        "reason": humanize(handoff.reason),
        "urgency": handoff.urgency,
        "status": humanize(handoff.status),
        "summary": clip(handoff.summary, DETAIL_CHARS),
        "opened_at": handoff.created_at,
        "assignee": assignee(delivery),
        "user": handoff.user_name,
        "escalated_from": previous_urgency(delivery),
        "escalated_by": actor(delivery) if delivery.event is EventType.escalated else None,
        "sla_breach": breach(delivery) if delivery.event is EventType.escalated else None,
        "url": handoff.url,
    }
    quoted = quoted_messages(handoff)
    if quoted:
        details["last_messages"] = [f"{who}: {text}" for who, text in quoted]
    return {key: value for key, value in details.items() if value}


def trigger_event(delivery: Delivery, routing_key: str, default_severity: str) -> dict[str, Any]:
    handoff = require_handoff(delivery)
    summary = headline(delivery)
    if handoff.summary.strip():
        summary += f": {handoff.summary.strip()}"
    payload: dict[str, Any] = {
        "summary": clip(summary, SUMMARY_CHARS),
        "source": _source(handoff),
        "severity": pagerduty_severity(handoff.severity, default_severity),
        "component": handoff.bot_name or "bot",
        "group": "nectar-handoffs",
        "class": humanize(handoff.reason),
        "custom_details": _details(delivery, handoff),
    }
    when = opened_at(handoff)
    if when is not None:
        payload["timestamp"] = when.isoformat()
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": handoff.id,
        "payload": payload,
        "client": CLIENT,
    }
    if handoff.url:
        event["client_url"] = handoff.url
        event["links"] = [{"href": handoff.url, "text": "Open the handoff in Nectar"}]
    return event


def follow_up_event(delivery: Delivery, routing_key: str, action: str) -> dict[str, Any]:
    """acknowledge or resolve: PagerDuty needs only the key of the alert."""
    handoff = require_handoff(delivery)
    return {"routing_key": routing_key, "event_action": action, "dedup_key": handoff.id}


def self_test_events(delivery: Delivery, routing_key: str, severity: str) -> list[dict[str, Any]]:
    dedup_key = f"{TEST_DEDUP_PREFIX}{delivery.id}"
    trigger = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": f"{TEST_TITLE}: {TEST_TEXT}",
            "source": "nectar",
            "severity": severity,
            "component": "notifications",
            "group": "nectar-handoffs",
            "class": "test notification",
            "custom_details": {"delivery_id": delivery.id, "resolves": "immediately"},
        },
        "client": CLIENT,
    }
    resolve = {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}
    return [trigger, resolve]


def build_events(
    delivery: Delivery, routing_key: str, default_severity: str
) -> list[dict[str, Any]]:
    """The events to send, in order, for this delivery."""
    if delivery.event is EventType.test:
        return self_test_events(delivery, routing_key, default_severity)
    action = _ACTIONS.get(delivery.event)
    if action is None:
        raise DeliveryFailed(f"PagerDuty has no action for {delivery.event.value}", retriable=False)
    if action == "trigger":
        return [trigger_event(delivery, routing_key, default_severity)]
    return [follow_up_event(delivery, routing_key, action)]


class PagerDutyChannel(HttpChannel[PagerDutyConfig]):
    name: ClassVar[str] = "pagerduty"

    async def send(self, delivery: Delivery) -> SendResult:
        secret = self._config.integration_key
        routing_key = secret.get_secret_value() if secret is not None else ""
        if not routing_key:
            raise DeliveryFailed("PagerDuty integration_key is not configured", retriable=False)
        events = build_events(delivery, routing_key, self._config.severity)
        status: int | None = None
        dedup_key = ""
        for event in events:
            try:
                response, result = await post_json(
                    self._client, self._guard, self._config.events_url, event, "PagerDuty"
                )
            except httpx.InvalidURL:
                raise DeliveryFailed("PagerDuty events_url is not valid", retriable=False) from None
            status = result.status_code
            dedup_key = _answered_key(response) or event["dedup_key"]
        actions = "+".join(event["event_action"] for event in events)
        refs = {REF_KEY: dedup_key} if delivery.handoff is not None else {}
        return SendResult(
            status_code=status, external_refs=refs, detail=f"PagerDuty {actions} {dedup_key}"
        )


def _answered_key(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    key = body.get("dedup_key") if isinstance(body, dict) else None
    return key if isinstance(key, str) and key else None
