from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from nectar.db import JSONType, UTCDateTime, new_id, utcnow


class MessageRole(enum.StrEnum):
    user = "user"
    bot = "bot"
    agent = "agent"
    system = "system"


class Conversation(SQLModel, table=True):
    __tablename__ = "nectar_bot_conversations"
    __table_args__ = (
        # Not last_message_at: every turn updates it, and an index on it would turn each of
        # those updates into new entries in every index (no heap-only update).
        sa.Index("ix_nectar_bot_conversations_bot_created", "bot_id", "created_at"),
        # PostgreSQL: room on each page for the turn's update to stay there (migration 0008).
        {"postgresql_with": {"fillfactor": 70}},
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    bot_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("nectar_bots.id", ondelete="CASCADE"), nullable=False
        )
    )
    # The embedding application's own user reference and contact details (optional).
    user_ref: str | None = Field(default=None, sa_column=sa.Column(sa.String(200)))
    user_name: str | None = Field(default=None, sa_column=sa.Column(sa.String(200)))
    user_email: str | None = Field(default=None, sa_column=sa.Column(sa.String(320)))
    metadata_: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column("metadata", JSONType, nullable=False)
    )
    # "api" (started with the bot's key) or "public" (the keyless public endpoint): public
    # endpoints serve public conversations only, whoever learns another one's id.
    origin: str = Field(
        default="api", sa_column=sa.Column(sa.String(8), nullable=False, server_default="api")
    )
    # Kept as a counter so a turn needs no COUNT(*); it also orders messages (seq).
    message_count: int = 0
    handled_by: str = Field(default="bot", sa_column=sa.Column(sa.String(8), nullable=False))
    # When a human handed the conversation back: the length and duration triggers, and the
    # error-pattern history, count from here, not from the start.
    bot_since_seq: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    bot_since_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    last_message_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )


class Message(SQLModel, table=True):
    __tablename__ = "nectar_bot_messages"
    __table_args__ = (sa.UniqueConstraint("conversation_id", "seq"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    conversation_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid,
            sa.ForeignKey("nectar_bot_conversations.id", ondelete="CASCADE"),
            nullable=False,
        )
    )
    seq: int
    role: str = Field(sa_column=sa.Column(sa.String(8), nullable=False))
    content: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    confidence: float | None = None
    sources: list[Any] | None = Field(default=None, sa_column=sa.Column(JSONType))
    response_time_ms: int | None = None
    # The agent who wrote it (role "agent").
    author_id: uuid.UUID | None = Field(
        default=None,
        sa_column=sa.Column(sa.Uuid, sa.ForeignKey("users.id", ondelete="SET NULL")),
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )


class Usage(SQLModel, table=True):
    """One row per chat request, answered or refused (the seed's ``nectar_bot_usage``)."""

    __tablename__ = "nectar_bot_usage"
    __table_args__ = (sa.Index("ix_nectar_bot_usage_bot_created", "bot_id", "created_at"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    bot_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("nectar_bots.id", ondelete="CASCADE"), nullable=False
        )
    )
    conversation_id: uuid.UUID | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("nectar_bot_conversations.id", ondelete="CASCADE"), index=True
        ),
    )
    message_id: uuid.UUID | None = Field(default=None, sa_column=sa.Column(sa.Uuid))
    response_time_ms: int | None = None
    confidence: float | None = None
    knowledge_matches: int = 0
    rate_limit_hit: bool = False
    handled_by: str | None = Field(default=None, sa_column=sa.Column(sa.String(8)))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
