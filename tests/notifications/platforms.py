"""Small helpers for the chat and paging platform channels (Slack, Teams, PagerDuty): a
handoff view, a delivery, an HTTP client, and the failure cases every platform must map the
same way (Retry-After, 5xx, 4xx, timeouts, refused private URLs, redirects)."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from nectar.notifications.channels.base import (
    Channel,
    Delivery,
    DeliveryFailed,
    EventType,
    HandoffView,
)
from nectar.notifications.netguard import BlockedAddress, NetGuard
from tests.receivers import Check, Receiver, Scripted

LOCAL = NetGuard(["127.0.0.1"])
NOWHERE = NetGuard([])

# (config url or key, guard, client) -> channel
MakeChannel = Callable[[str, NetGuard, httpx.AsyncClient], Channel]


def receiver(check: Check | None = None, default: Scripted | None = None) -> Receiver:
    """A Receiver that uvicorn runs as ASGI 3. Receiver passes its bound ``_app`` method,
    which uvicorn's interface detection takes for ASGI 2 (every request then fails with a
    TypeError); a plain coroutine function is detected correctly. Harmless once
    tests/receivers.py passes ``interface="asgi3"`` itself."""
    made = Receiver(check, default)
    bound = made._app

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await bound(scope, receive, send)

    made._app = app  # type: ignore[method-assign]
    return made


def view(**fields: Any) -> HandoffView:
    handoff_id = str(uuid.uuid4())
    values: dict[str, Any] = {
        "id": handoff_id,
        "bot_id": str(uuid.uuid4()),
        "bot_name": "Support",
        "conversation_id": str(uuid.uuid4()),
        "status": "pending",
        "reason": "explicit_request",
        "urgency": "high",
        "severity": "critical",
        "summary": "The customer was charged twice for order 1042 and wants a refund.",
        "created_at": "2025-03-04T10:15:00+00:00",
        "url": f"http://nectar.example.com/api/nectar-bots/handoffs/{handoff_id}",
        "user_name": "Ada",
        "transcript": [
            {"role": "user", "content": "I was charged twice for my order."},
            {"role": "assistant", "content": "I'm sorry to hear that. Let me check."},
            {"role": "user", "content": "I want to talk to a human."},
        ],
    }
    values.update(fields)
    return HandoffView(**values)


def delivery(
    event: EventType,
    handoff: HandoffView | None,
    channel: str,
    data: dict[str, Any] | None = None,
) -> Delivery:
    delivery_id = str(uuid.uuid4())
    return Delivery(
        id=delivery_id,
        channel=channel,
        event=event,
        handoff=handoff,
        recipient=channel,
        attempt=1,
        idempotency_key=delivery_id,
        data=data or {},
    )


@asynccontextmanager
async def http_client(seconds: float = 5.0) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=seconds) as client:
        yield client


def dead_port() -> int:
    """A port on 127.0.0.1 with nothing listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def failure(send: Awaitable[Any]) -> DeliveryFailed:
    with pytest.raises(DeliveryFailed) as caught:
        await send
    return caught.value


async def assert_failures_mapped(
    make: MakeChannel,
    platform: Receiver,
    secret_url: str,
    secret: str,
    sample: Delivery,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every way a platform call can fail, mapped to retriable or permanent, and the
    credential (``secret``) in no error message and no log line of ours."""
    caplog.set_level(logging.DEBUG, logger="nectar")
    errors: list[DeliveryFailed] = []
    async with http_client() as client:
        channel = make(secret_url, LOCAL, client)

        platform.then(429, {"message": "throttled"}, headers={"Retry-After": "7"})
        error = await failure(channel.send(sample))
        assert (error.retriable, error.status_code, error.retry_after) == (True, 429, 7.0)
        errors.append(error)

        platform.then(503, "upstream unavailable")
        error = await failure(channel.send(sample))
        assert (error.retriable, error.status_code) == (True, 503)
        errors.append(error)

        platform.then(500, "rollup_error")
        error = await failure(channel.send(sample))
        assert (error.retriable, error.status_code) == (True, 500)
        errors.append(error)

        platform.then(400, "invalid_payload")
        error = await failure(channel.send(sample))
        assert (error.retriable, error.status_code) == (False, 400)
        assert "invalid_payload" in str(error)
        errors.append(error)

        platform.then(404, "no_service")
        error = await failure(channel.send(sample))
        assert (error.retriable, error.status_code) == (False, 404)
        errors.append(error)

        # A redirect is a failure, and its target never hears from us.
        async with receiver() as elsewhere:
            platform.then(302, "", headers={"Location": f"{elsewhere.url}/steal"})
            error = await failure(channel.send(sample))
            assert (error.retriable, error.status_code) == (False, 302)
            assert elsewhere.requests == []
            errors.append(error)

    # Slower than the client's timeout: retried later.
    async with http_client(seconds=0.2) as client:
        channel = make(secret_url, LOCAL, client)
        platform.then(202, {}, delay=0.8)
        error = await failure(channel.send(sample))
        assert error.retriable and "timed out" in str(error)
        errors.append(error)

    async with http_client() as client:
        # Nothing listening: retried later.
        down = secret_url.replace(f":{platform.port}", f":{dead_port()}")
        error = await failure(make(down, LOCAL, client).send(sample))
        assert error.retriable and error.status_code is None
        errors.append(error)

        # A private address that is not allow-listed: refused before any request is made.
        seen = len(platform.requests) + len(platform.refused)
        error = await failure(make(secret_url, NOWHERE, client).send(sample))
        assert isinstance(error, BlockedAddress) and not error.retriable
        assert len(platform.requests) + len(platform.refused) == seen
        errors.append(error)

    for error in errors:
        assert secret not in str(error), error
        assert secret not in repr(error.args), error
    assert secret not in caplog.text
