from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from nectar.db import JSONType, UTCDateTime, new_id, utcnow


class HandoffStatus(enum.StrEnum):
    pending = "pending"
    assigned = "assigned"
    in_progress = "in_progress"
    resolved = "resolved"
    cancelled = "cancelled"


OPEN_STATUSES = (HandoffStatus.pending, HandoffStatus.assigned, HandoffStatus.in_progress)
_OPEN_SQL = "status IN ('pending', 'assigned', 'in_progress')"


class Handoff(SQLModel, table=True):
    __tablename__ = "nectar_bot_handoffs"
    __table_args__ = (
        # At most one open handoff per conversation, enforced by the database.
        sa.Index(
            "uq_nectar_bot_handoffs_open_conversation",
            "conversation_id",
            unique=True,
            sqlite_where=sa.text(_OPEN_SQL),
            postgresql_where=sa.text(_OPEN_SQL),
        ),
        sa.Index("ix_nectar_bot_handoffs_status_created", "status", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    bot_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("nectar_bots.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    conversation_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid,
            sa.ForeignKey("nectar_bot_conversations.id", ondelete="CASCADE"),
            nullable=False,
        )
    )
    status: str = Field(
        default=HandoffStatus.pending.value, sa_column=sa.Column(sa.String(16), nullable=False)
    )
    reason: str = Field(sa_column=sa.Column(sa.String(32), nullable=False, index=True))
    urgency: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    # Which rule fired, on which words, with which score.
    evidence: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JSONType, nullable=False)
    )
    # Snapshot when the handoff opened: bot, user, messages with confidences and sources...
    context: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JSONType, nullable=False)
    )
    summary: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    trigger_message_id: uuid.UUID | None = Field(default=None, sa_column=sa.Column(sa.Uuid))
    assignee_id: uuid.UUID | None = Field(
        default=None,
        sa_column=sa.Column(sa.Uuid, sa.ForeignKey("users.id", ondelete="SET NULL"), index=True),
    )
    # Who opened it by hand (admin_override); None when a trigger fired.
    opened_by_id: uuid.UUID | None = Field(
        default=None, sa_column=sa.Column(sa.Uuid, sa.ForeignKey("users.id", ondelete="SET NULL"))
    )
    resolution_notes: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    return_to_bot: bool = True
    escalation_level: int = 0
    # What external platforms told us (Zendesk ticket id, ServiceNow sys_id...).
    external_refs: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JSONType, nullable=False, server_default="{}")
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    assigned_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
    first_response_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
    resolved_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
    cancelled_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
    # SLA targets for this handoff's urgency, fixed when it opened.
    accept_due_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
    resolve_due_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))


class HandoffEvent(SQLModel, table=True):
    """The history of a handoff: every change, who made it and when."""

    __tablename__ = "nectar_bot_handoff_events"
    __table_args__ = (sa.Index("ix_nectar_bot_handoff_events_handoff", "handoff_id", "created_at"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    handoff_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("nectar_bot_handoffs.id", ondelete="CASCADE"), nullable=False
        )
    )
    # created, assigned, delegated, replied, resolved, cancelled, escalated
    kind: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    actor_id: uuid.UUID | None = Field(
        default=None, sa_column=sa.Column(sa.Uuid, sa.ForeignKey("users.id", ondelete="SET NULL"))
    )
    from_status: str | None = Field(default=None, sa_column=sa.Column(sa.String(16)))
    to_status: str | None = Field(default=None, sa_column=sa.Column(sa.String(16)))
    detail: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JSONType, nullable=False)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )


class ResponseTemplate(SQLModel, table=True):
    """A quick response for agents, with placeholders like {user_name} and {bot_name}."""

    __tablename__ = "nectar_bot_response_templates"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(100), nullable=False, unique=True))
    body: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_by_id: uuid.UUID | None = Field(
        default=None, sa_column=sa.Column(sa.Uuid, sa.ForeignKey("users.id", ondelete="SET NULL"))
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
