from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query
from sse_starlette.sse import EventSourceResponse

from nectar.deps import ServicesDep, SessionDep
from nectar.errors import responses
from nectar.notifications import service, stream
from nectar.notifications.schemas import (
    NotificationEnvelope,
    NotificationList,
    NotificationOut,
    ReadAllResponse,
)
from nectar.pagination import PageDep
from nectar.users.dependencies import CurrentUser, StreamUser

router = APIRouter(prefix="/api/notifications", tags=["notifications"])
_ERRORS = responses(401, 404, 422)


@router.get("", response_model=NotificationList, responses=_ERRORS)
async def list_notifications(
    user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    unread: Annotated[bool, Query(description="only notifications not read yet")] = False,
) -> NotificationList:
    """Your inbox, newest first, with the number still unread."""
    rows, pagination, unread_count = await service.list_for(session, user.id, page, unread=unread)
    return NotificationList(
        notifications=[NotificationOut.model_validate(n) for n in rows],
        pagination=pagination,
        unread_count=unread_count,
    )


@router.post("/read-all", response_model=ReadAllResponse, responses=_ERRORS)
async def read_all(
    user: CurrentUser, session: SessionDep, services: ServicesDep
) -> ReadAllResponse:
    """Mark every notification in your inbox read; says how many were unread."""
    updated = await service.mark_all_read(session, services.events, user.id)
    return ReadAllResponse(
        message=f"{updated} notification{'' if updated == 1 else 's'} marked read",
        updated=updated,
        unread_count=0,
    )


@router.get(
    "/stream",
    responses={
        **_ERRORS,
        200: {
            "description": "text/event-stream of `notification` and `read` events",
            "content": {"text/event-stream": {}},
        },
    },
    response_class=EventSourceResponse,
)
async def follow(
    user: StreamUser,
    services: ServicesDep,
    after: Annotated[
        uuid.UUID | None, Query(description="resume after this notification id")
    ] = None,
    last_event_id: Annotated[uuid.UUID | None, Header()] = None,
) -> EventSourceResponse:
    """Live: your unread notifications (or those after `after` / the `Last-Event-ID` of a
    reconnect), then each new one as it arrives. Browsers' EventSource cannot send headers,
    so the token may also come as `?access_token=`."""
    events = stream.follow(services.engine, services.events, user.id, last_event_id or after)
    return EventSourceResponse(events, ping=15)


@router.post("/{notification_id}/read", response_model=NotificationEnvelope, responses=_ERRORS)
async def read(
    notification_id: uuid.UUID, user: CurrentUser, session: SessionDep, services: ServicesDep
) -> NotificationEnvelope:
    """Mark one of your notifications read (reading it again changes nothing)."""
    notification, unread_count = await service.mark_read(
        session, services.events, user.id, notification_id
    )
    return NotificationEnvelope(
        message="Notification marked read",
        notification=NotificationOut.model_validate(notification),
        unread_count=unread_count,
    )
