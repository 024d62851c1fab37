from __future__ import annotations

import enum
import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from nectar.db import UTCDateTime, new_id, utcnow


class Role(enum.StrEnum):
    admin = "admin"
    agent = "agent"
    member = "member"


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    # Stored lower-cased; unique.
    email: str = Field(sa_column=sa.Column(sa.String(320), nullable=False, unique=True))
    name: str = Field(default="", max_length=200)
    role: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    password_hash: str = Field(sa_column=sa.Column(sa.String(255), nullable=False))
    is_active: bool = True
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    last_login_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))


class AccessToken(SQLModel, table=True):
    __tablename__ = "access_tokens"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    # sha256 of the token; the token itself is never stored.
    token_hash: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, unique=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    expires_at: datetime = Field(sa_column=sa.Column(UTCDateTime, nullable=False, index=True))
    revoked_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
