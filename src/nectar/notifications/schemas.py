from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field

from nectar.pagination import Pagination


class NotificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    # The event that caused it: handoff.created, handoff.assigned, ..., or test.
    kind: str
    title: str
    body: str
    urgency: str | None
    handoff_id: uuid.UUID | None
    data: dict[str, Any]
    read_at: datetime | None
    created_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def read(self) -> bool:
        return self.read_at is not None


class NotificationList(BaseModel):
    notifications: list[NotificationOut]
    pagination: Pagination
    # Across the whole inbox, whatever the filter: for the badge.
    unread_count: int


class NotificationEnvelope(BaseModel):
    message: str
    notification: NotificationOut
    unread_count: int


class ReadAllResponse(BaseModel):
    message: str
    # How many were unread and are now read.
    updated: int
    unread_count: int
