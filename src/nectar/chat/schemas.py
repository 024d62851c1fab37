from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

MAX_MESSAGE_CHARS = 4000
MAX_METADATA_BYTES = 8192
_NUL = "text must not contain NUL (\\u0000) characters"


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


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
        if value is None:
            return value
        dumped = json.dumps(value, default=str)
        if len(dumped) > MAX_METADATA_BYTES:
            raise ValueError(f"at most {MAX_METADATA_BYTES} bytes as JSON")
        if _has_nul(value):
            raise ValueError(_NUL)
        return value

    @model_validator(mode="after")
    def _storable(self) -> ChatRequest:
        # PostgreSQL cannot store NUL in text; refused alike on both databases.
        user = self.user
        texts = [self.message, *((user.id, user.name, user.email) if user else ())]
        if any(t and "\x00" in t for t in texts):
            raise ValueError(_NUL)
        return self


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
