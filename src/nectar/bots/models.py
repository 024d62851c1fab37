from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from nectar.db import JSONType, UTCDateTime, new_id, utcnow


class BotStatus(enum.StrEnum):
    active = "active"
    inactive = "inactive"
    maintenance = "maintenance"


class NectarBot(SQLModel, table=True):
    __tablename__ = "nectar_bots"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    owner_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("users.id", ondelete="RESTRICT"), nullable=False, index=True
        )
    )
    name: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    slug: str | None = Field(default=None, sa_column=sa.Column(sa.String(64), unique=True))
    description: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    system_prompt: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    max_conversation_length: int = 20
    confidence_threshold: float = 0.7
    rate_limit_per_hour: int = Field(
        default=100, sa_column=sa.Column(sa.BigInteger, nullable=False)
    )
    rate_limit_per_day: int = Field(
        default=1000, sa_column=sa.Column(sa.BigInteger, nullable=False)
    )
    is_public: bool = False
    handoff_enabled: bool = True
    handoff_keywords: list[Any] = Field(
        default_factory=list, sa_column=sa.Column(JSONType, nullable=False)
    )
    handoff_confidence_threshold: float = 0.6
    # The rest of the bot's handoff configuration (POST /api/nectar-bots/{id}/handoff):
    # disabled triggers, time-based minutes, notification methods and urgency.
    handoff_settings: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JSONType, nullable=False, server_default="{}")
    )
    status: str = Field(
        default=BotStatus.active.value,
        sa_column=sa.Column(sa.String(16), nullable=False, index=True),
    )
    # sha256 of the key; the key itself is shown once and never stored.
    api_key_hash: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, unique=True))
    api_key_hint: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    api_key_created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False, index=True)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
