"""Generic webhooks, signed per the Standard Webhooks spec (standardwebhooks.com).

One delivery per configured endpoint (``delivery.recipient`` is its URL). The request:

* ``webhook-id``: the delivery's idempotency key, the same on every retry, so a receiver
  drops duplicates;
* ``webhook-timestamp``: when this attempt was made (unix seconds), so a receiver can refuse
  replays (the spec's verifiers allow five minutes);
* ``webhook-signature``: ``v1,`` + base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}``, keyed
  with the base64-decoded part of the endpoint's ``whsec_`` secret;
* body ``{"type": "handoff.created", "timestamp": ISO 8601, "data": {...}}``: ``data`` holds
  the (scrubbed) handoff fields; ``timestamp`` is when the event happened when the event
  data says so (``occurred_at``), else when it was sent. A test notification has type
  ``nectar.test`` and ``data`` ``{"message", "test": true}``.

An endpoint with ``event_types`` gets only those (``handoff.created`` or just ``created``);
test notifications go to every endpoint. The secret is never logged, and errors name the
endpoint by its host only (a URL's path or query may carry a token).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from nectar.config import WebhookConfig, WebhookEndpoint
from nectar.notifications.channels.base import (
    Delivery,
    DeliveryFailed,
    EventType,
    HandoffView,
    SendResult,
)
from nectar.notifications.channels.http import HttpChannel, check_response, request
from nectar.notifications.channels.wording import TEST_TEXT
from nectar.notifications.netguard import NetGuard

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every secret, not a secret
TEST_TYPE = "nectar.test"
_VIEW_FIELDS = tuple(f.name for f in dataclasses.fields(HandoffView))


def event_type(event: EventType) -> str:
    return TEST_TYPE if event is EventType.test else event.value


def _normalized(name: str) -> str:
    name = name.strip().lower()
    return name if "." in name else f"handoff.{name}"


def secret_key(secret: str) -> bytes:
    """The HMAC key: the base64 part of a ``whsec_`` secret, decoded."""
    try:
        key = base64.b64decode(secret.strip().removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise DeliveryFailed(
            "the webhook secret is not 'whsec_' followed by base64", retriable=False
        )
    return key


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def payload(delivery: Delivery, now: datetime) -> dict[str, Any]:
    occurred = delivery.data.get("occurred_at")
    when = occurred if isinstance(occurred, str) and occurred else _iso(now)
    if delivery.handoff is None:
        message = delivery.data.get("message")
        text = message.strip() if isinstance(message, str) and message.strip() else TEST_TEXT
        data: dict[str, Any] = {"message": text, "test": True}
    else:
        # Its fields as they are (no deep copy: the body is serialised, never changed).
        data = {name: getattr(delivery.handoff, name) for name in _VIEW_FIELDS}
    return {"type": event_type(delivery.event), "timestamp": when, "data": data}


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


class WebhookChannel(HttpChannel[WebhookConfig]):
    name: ClassVar[str] = "webhook"

    def __init__(
        self,
        config: WebhookConfig,
        *,
        client: httpx.AsyncClient,
        guard: NetGuard,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config, client=client, guard=guard)
        self._clock = clock  # unix seconds; tests move it to check that replays are refused
        self._keys: dict[str, bytes] = {}  # decoded secrets by endpoint URL

    def _endpoint(self, url: str) -> WebhookEndpoint | None:
        for endpoint in self._config.endpoints:
            if endpoint.url == url:
                return endpoint
        for endpoint in self._config.endpoints:
            if endpoint.url.rstrip("/") == url.rstrip("/"):
                return endpoint
        return None

    def wants(self, url: str, event: EventType) -> bool:
        """Whether the endpoint at ``url`` subscribes to ``event`` (tests go everywhere)."""
        endpoint = self._endpoint(url)
        if endpoint is None:
            return False
        if event is EventType.test or not endpoint.event_types:
            return True
        return event.value in {_normalized(name) for name in endpoint.event_types}

    async def send(self, delivery: Delivery) -> SendResult:
        what = f"webhook {_host(delivery.recipient)}"
        endpoint = self._endpoint(delivery.recipient)
        if endpoint is None:
            raise DeliveryFailed(f"{what}: no such endpoint is configured", retriable=False)
        key = self._keys.get(endpoint.url)
        if key is None:
            key = self._keys[endpoint.url] = secret_key(endpoint.secret.get_secret_value())
        now = self._clock()
        message = payload(delivery, datetime.fromtimestamp(now, UTC))
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
        timestamp = int(now)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": delivery.idempotency_key,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(key, delivery.idempotency_key, timestamp, body),
        }
        try:
            response = await request(
                self._client, self._guard, "POST", endpoint.url, what, content=body, headers=headers
            )
        except httpx.InvalidURL:
            raise DeliveryFailed(f"{what}: the URL is not valid", retriable=False) from None
        result = check_response(response, what)
        log.info("%s accepted %s %s", what, event_type(delivery.event), delivery.idempotency_key)
        return SendResult(
            status_code=result.status_code, detail=f"{what} answered {result.status_code}"
        )
