from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

MAX_MESSAGE_CHARS = 4000
MAX_METADATA_BYTES = 8192


class ChatUser(BaseModel):
    """The embedding application's user; stored with the conversation for the agent."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    email: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$"),
        ]
        | None
    ) = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_MESSAGE_CHARS)
    ]
    conversation_id: uuid.UUID | None = Field(
        default=None, description="continue this conversation (as returned by an earlier turn)"
    )
    user: ChatUser | None = None
    metadata: dict[str, Any] | None = Field(
        default=None, description=f"free-form, at most {MAX_METADATA_BYTES} bytes as JSON"
    )

    @field_validator("metadata")
    @classmethod
    def _small(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value, default=str)) > MAX_METADATA_BYTES:
            raise ValueError(f"at most {MAX_METADATA_BYTES} bytes as JSON")
        return value


class SourceOut(BaseModel):
    document_id: uuid.UUID
    title: str
    heading: str
    score: float


class HandoffRef(BaseModel):
    id: uuid.UUID
    status: str
    reason: str
    urgency: str


class ChatResponse(BaseModel):
    conversation_id: uuid.UUID
    message_id: uuid.UUID = Field(description="the last message this turn stored")
    reply: str | None
    confidence: float | None
    handled_by: Literal["bot", "human"]
    sources: list[SourceOut]
    handoff: HandoffRef | None = None


class MessageOut(BaseModel):
    id: uuid.UUID
    seq: int
    role: str
    content: str
    confidence: float | None
    sources: list[Any] | None
    created_at: datetime


class MessageList(BaseModel):
    conversation_id: uuid.UUID
    messages: list[MessageOut]
    has_more: bool


class PublicBot(BaseModel):
    slug: str
    name: str
    description: str
