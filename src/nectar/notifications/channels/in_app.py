"""The in-app inbox: one Notification row per delivery, then a live event to the user's open
streams. Not external: it keeps the full, unscrubbed text (only that user can read it)."""

from __future__ import annotations

import logging
import uuid
from typing import Any, ClassVar

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from nectar.db import session_scope
from nectar.events import EventBus, user_channel
from nectar.notifications import service
from nectar.notifications.channels.base import Delivery, DeliveryFailed, SendResult
from nectar.notifications.channels.text import describe
from nectar.notifications.models import Notification

log = logging.getLogger(__name__)
# Delivery ids are UUIDs; anything else is mapped to a stable UUID so that idempotency holds.
_FOREIGN_IDS = uuid.UUID("5b0f3c1e-8f0a-4a57-9a55-0d1b7e6c2a10")


def _delivery_uuid(delivery_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(delivery_id)
    except ValueError:
        return uuid.uuid5(_FOREIGN_IDS, delivery_id)


def _data(delivery: Delivery) -> dict[str, Any]:
    """What a client needs to link the entry to its handoff without another request."""
    data: dict[str, Any] = {"event": delivery.event.value}
    view = delivery.handoff
    if view is not None:
        data.update(
            bot_id=view.bot_id,
            bot_name=view.bot_name,
            conversation_id=view.conversation_id,
            status=view.status,
            reason=view.reason,
            severity=view.severity,
            url=view.url,
        )
    if delivery.data:
        data["details"] = dict(delivery.data)
    return data


class InAppChannel:
    name: ClassVar[str] = "in_app"
    external: ClassVar[bool] = False

    def __init__(self, sessions: async_sessionmaker[AsyncSession], events: EventBus) -> None:
        self._sessions = sessions
        self._events = events

    async def send(self, delivery: Delivery) -> SendResult:
        try:
            user_id = uuid.UUID(delivery.recipient)
        except ValueError:
            raise DeliveryFailed(
                f"in_app recipient {delivery.recipient[:100]!r} is not a user id", retriable=False
            ) from None
        notification = await self._store(delivery, user_id, _delivery_uuid(delivery.id))
        # Also after a duplicate run: the first may have died between commit and publish.
        # Streams drop an id they have already sent.
        await self._events.publish(user_channel(user_id), service.created_event(notification))
        return SendResult(detail=f"notification {notification.id}")

    async def aclose(self) -> None:
        """Nothing to close: the sessions and the event bus belong to the caller."""

    async def _store(
        self, delivery: Delivery, user_id: uuid.UUID, delivery_id: uuid.UUID
    ) -> Notification:
        """The notification for this delivery: inserted in its own short transaction, or the
        one an earlier run of the same delivery inserted."""
        wording = describe(delivery)
        view = delivery.handoff
        try:
            async with session_scope(self._sessions) as session:
                existing = await service.by_delivery(session, delivery_id)
                if existing is not None:
                    return existing
                return await service.add(
                    session,
                    Notification(
                        user_id=user_id,
                        delivery_id=delivery_id,
                        handoff_id=uuid.UUID(view.id) if view else None,
                        kind=delivery.event.value,
                        title=wording.title,
                        body=wording.body,
                        urgency=view.urgency if view else None,
                        data=_data(delivery),
                    ),
                )
        except IntegrityError:
            # A concurrent run of the same delivery won the insert, or the user (or the
            # handoff) has been deleted since the delivery was planned.
            async with self._sessions() as session:
                existing = await service.by_delivery(session, delivery_id)
            if existing is not None:
                return existing
            raise DeliveryFailed(
                f"user {user_id} or handoff {view.id if view else '-'} no longer exists",
                retriable=False,
            ) from None
        except (DBAPIError, OSError) as exc:
            raise DeliveryFailed(
                f"could not store the notification: {type(exc).__name__}", retriable=True
            ) from exc
