"""Admin endpoints for the outbox, and ``POST /api/messaging/test-notification``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field

from nectar.deps import ServicesDep, SessionDep
from nectar.errors import responses
from nectar.notifications import deliveries
from nectar.notifications.models import Delivery, DeliveryAttempt, DeliveryStatus
from nectar.pagination import PageDep, Pagination
from nectar.users.dependencies import AdminUser

router = APIRouter(tags=["notifications"])
_ERRORS = responses(401, 403, 404, 409, 422)


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    started_at: datetime
    duration_ms: int
    success: bool
    status_code: int | None
    error: str | None


class DeliveryOut(BaseModel):
    id: uuid.UUID
    handoff_id: uuid.UUID | None
    event: str
    channel: str
    recipient: str
    status: str
    attempts: int
    max_attempts: int
    next_attempt_at: datetime
    last_error: str | None
    last_status_code: int | None
    created_at: datetime
    delivered_at: datetime | None
    history: list[AttemptOut]


def _out(d: Delivery, history: list[DeliveryAttempt]) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        handoff_id=d.handoff_id,
        event=d.event,
        channel=d.channel,
        recipient=deliveries.shown_recipient(d.channel, d.recipient),
        status=d.status,
        attempts=d.attempts,
        max_attempts=d.max_attempts,
        next_attempt_at=d.next_attempt_at,
        last_error=d.last_error,
        last_status_code=d.last_status_code,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
        history=[AttemptOut.model_validate(a) for a in history],
    )


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]
    pagination: Pagination


class DeliveryEnvelope(BaseModel):
    message: str | None = None
    delivery: DeliveryOut


class TestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: list[str] | None = Field(
        default=None, description="only these channels (default: every configured one)"
    )
    wait_seconds: float = Field(
        default=5.0, ge=0, le=30, description="wait up to this long for first attempts"
    )


class TestResponse(BaseModel):
    message: str
    deliveries: list[DeliveryOut]


@router.get("/api/notifications/deliveries", response_model=DeliveryList, responses=_ERRORS)
async def list_deliveries(
    _admin: AdminUser,
    session: SessionDep,
    page: PageDep,
    status: DeliveryStatus | None = None,
    channel: Annotated[str | None, Query(max_length=16)] = None,
    handoff_id: uuid.UUID | None = None,
) -> DeliveryList:
    """Every notification delivery with its attempts, newest first (`status=dead` to see
    what never arrived)."""
    rows, history, pagination = await deliveries.list_deliveries(
        session, page, status=status, channel=channel, handoff_id=handoff_id
    )
    return DeliveryList(deliveries=[_out(d, history[d.id]) for d in rows], pagination=pagination)


@router.get(
    "/api/notifications/deliveries/{delivery_id}",
    response_model=DeliveryEnvelope,
    responses=_ERRORS,
)
async def get_delivery(
    delivery_id: uuid.UUID, _admin: AdminUser, session: SessionDep
) -> DeliveryEnvelope:
    delivery, history = await deliveries.get_delivery(session, delivery_id)
    return DeliveryEnvelope(delivery=_out(delivery, history))


@router.post(
    "/api/notifications/deliveries/{delivery_id}/retry",
    response_model=DeliveryEnvelope,
    responses=_ERRORS,
)
async def retry_delivery(
    delivery_id: uuid.UUID, _admin: AdminUser, session: SessionDep, services: ServicesDep
) -> DeliveryEnvelope:
    """Try a dead delivery again, with a fresh set of attempts."""
    delivery, history = await deliveries.retry(session, services.queue, delivery_id)
    return DeliveryEnvelope(message="Delivery queued again", delivery=_out(delivery, history))


@router.post(
    "/api/messaging/test-notification",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TestResponse,
    responses=_ERRORS,
)
async def send_test_notification(
    admin: AdminUser,
    services: ServicesDep,
    data: TestRequest | None = None,
) -> TestResponse:
    """Send a test through every configured channel and report how each went."""
    data = data or TestRequest()
    # The deliveries are committed in a unit of work of their own, so workers can take them
    # while we wait (this route opens no request transaction that could hold a lock).
    sent = await deliveries.send_test_and_wait(
        services.sessions,
        services.settings.nectar_bots,
        services.queue,
        admin,
        data.channels,
        data.wait_seconds,
    )
    history = {d.id: h for d, h in sent}
    return TestResponse(
        message=f"Test sent through {len(sent)} channel(s)",
        deliveries=[_out(d, history[d.id]) for d, _ in sent],
    )
