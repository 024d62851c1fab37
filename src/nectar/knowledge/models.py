from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from nectar.db import UTCDateTime, new_id, utcnow


class HoneyJar(SQLModel, table=True):
    """A knowledge base: a named set of documents that bots answer from."""

    __tablename__ = "honey_jars"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    owner_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("users.id", ondelete="RESTRICT"), nullable=False, index=True
        )
    )
    name: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    description: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False, index=True)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )


class Document(SQLModel, table=True):
    __tablename__ = "honey_jar_documents"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    jar_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("honey_jars.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    title: str = Field(sa_column=sa.Column(sa.String(300), nullable=False))
    content: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    content_type: str = Field(
        default="text/markdown", sa_column=sa.Column(sa.String(32), nullable=False)
    )
    filename: str | None = Field(default=None, sa_column=sa.Column(sa.String(255)))
    size_bytes: int = 0
    chunk_count: int = 0
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False, index=True)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )


class Chunk(SQLModel, table=True):
    """A searchable piece of a document: one section (or part of one) with its heading path.

    Full-text indexes live beside this table and are managed by the migration: an FTS5 table
    kept in sync by triggers on SQLite, a GIN expression index on PostgreSQL.
    """

    __tablename__ = "honey_jar_chunks"

    id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, primary_key=True))
    document_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid,
            sa.ForeignKey("honey_jar_documents.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    jar_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("honey_jars.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    position: int
    # "Document title > Section > Subsection": searched with a higher weight than the body.
    heading: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    body: str = Field(sa_column=sa.Column(sa.Text, nullable=False))


class BotHoneyJar(SQLModel, table=True):
    """Which jars a bot answers from."""

    __tablename__ = "nectar_bot_honey_jars"

    bot_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("nectar_bots.id", ondelete="CASCADE"), primary_key=True
        )
    )
    jar_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid,
            sa.ForeignKey("honey_jars.id", ondelete="CASCADE"),
            primary_key=True,
            index=True,
        )
    )
    position: int = 0
