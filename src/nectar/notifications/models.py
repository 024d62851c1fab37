from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from nectar.db import JSONType, UTCDateTime, new_id, utcnow


class DeliveryStatus(enum.StrEnum):
    pending = "pending"  # waiting for its (next) attempt
    sending = "sending"  # claimed by a worker until lease_until
    delivered = "delivered"
    dead = "dead"  # gave up: after the last attempt, or a permanent error


class Delivery(SQLModel, table=True):
    """The outbox: one row per (handoff event, channel, recipient), written in the same
    transaction as the event. Workers send it; the sweeper re-enqueues what is left."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        sa.Index("ix_notification_deliveries_due", "status", "next_attempt_at"),
        sa.Index("ix_notification_deliveries_handoff", "handoff_id", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    handoff_id: uuid.UUID | None = Field(
        default=None,
        sa_column=sa.Column(sa.Uuid, sa.ForeignKey("nectar_bot_handoffs.id", ondelete="CASCADE")),
    )
    event: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    channel: str = Field(sa_column=sa.Column(sa.String(16), nullable=False, index=True))
    # A user id (in_app), an email address, a webhook URL, or the integration's name.
    recipient: str = Field(sa_column=sa.Column(sa.String(2048), nullable=False))
    recipient_user_id: uuid.UUID | None = Field(
        default=None,
        sa_column=sa.Column(sa.Uuid, sa.ForeignKey("users.id", ondelete="CASCADE")),
    )
    data: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JSONType, nullable=False)
    )
    status: str = Field(
        default=DeliveryStatus.pending.value, sa_column=sa.Column(sa.String(16), nullable=False)
    )
    attempts: int = 0
    max_attempts: int = 6
    next_attempt_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    lease_until: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    last_status_code: int | None = None
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    delivered_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))


class DeliveryAttempt(SQLModel, table=True):
    __tablename__ = "notification_delivery_attempts"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    delivery_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid,
            sa.ForeignKey("notification_deliveries.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    number: int
    started_at: datetime = Field(sa_column=sa.Column(UTCDateTime, nullable=False))
    duration_ms: int
    success: bool
    status_code: int | None = None
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))


class Notification(SQLModel, table=True):
    """A user's in-app inbox entry."""

    __tablename__ = "notifications"
    __table_args__ = (sa.Index("ix_notifications_user_created", "user_id", "created_at"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(
        sa_column=sa.Column(sa.Uuid, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    )
    # The delivery that created it: a job that runs twice creates one notification.
    delivery_id: uuid.UUID | None = Field(default=None, sa_column=sa.Column(sa.Uuid, unique=True))
    handoff_id: uuid.UUID | None = Field(
        default=None,
        sa_column=sa.Column(sa.Uuid, sa.ForeignKey("nectar_bot_handoffs.id", ondelete="CASCADE")),
    )
    kind: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    title: str = Field(sa_column=sa.Column(sa.String(300), nullable=False))
    body: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    urgency: str | None = Field(default=None, sa_column=sa.Column(sa.String(16)))
    data: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JSONType, nullable=False)
    )
    read_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
