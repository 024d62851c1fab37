from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from nectar.chat.schemas import MAX_MESSAGE_CHARS
from nectar.handoffs.detection.base import Reason, Urgency
from nectar.pagination import Pagination


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HandoffOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    bot_id: uuid.UUID
    conversation_id: uuid.UUID
    status: str
    reason: str
    urgency: str
    summary: str
    evidence: dict[str, Any]
    assignee_id: uuid.UUID | None
    opened_by_id: uuid.UUID | None
    resolution_notes: str | None
    return_to_bot: bool
    escalation_level: int
    created_at: datetime
    updated_at: datetime
    assigned_at: datetime | None
    first_response_at: datetime | None
    resolved_at: datetime | None
    cancelled_at: datetime | None
    accept_due_at: datetime | None
    resolve_due_at: datetime | None
    time_to_accept_seconds: float | None = None
    time_to_first_response_seconds: float | None = None
    time_to_resolve_seconds: float | None = None

    @model_validator(mode="after")
    def _durations(self) -> HandoffOut:
        def since(moment: datetime | None) -> float | None:
            return round((moment - self.created_at).total_seconds(), 3) if moment else None

        self.time_to_accept_seconds = since(self.assigned_at)
        self.time_to_first_response_seconds = since(self.first_response_at)
        self.time_to_resolve_seconds = since(self.resolved_at)
        return self


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    actor_id: uuid.UUID | None
    from_status: str | None
    to_status: str | None
    detail: dict[str, Any]
    created_at: datetime


class ConversationMessage(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    seq: int
    role: str
    content: str
    confidence: float | None
    sources: list[Any] | None
    author_id: uuid.UUID | None
    created_at: datetime


class HandoffDetail(HandoffOut):
    context: dict[str, Any]
    events: list[EventOut]
    messages: list[ConversationMessage] = Field(
        description="the conversation as it is now (the context holds it as it was at handoff)"
    )


class HandoffEnvelope(BaseModel):
    message: str
    handoff: HandoffOut


class HandoffList(BaseModel):
    handoffs: list[HandoffOut]
    pagination: Pagination


class AssignRequest(_Input):
    agent_id: uuid.UUID | None = Field(
        default=None, description="delegate to this agent; leave out to accept it yourself"
    )


class ReplyRequest(_Input):
    content: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_MESSAGE_CHARS),
        ]
        | None
    ) = None
    template_id: uuid.UUID | None = None
    variables: dict[str, Annotated[str, StringConstraints(max_length=500)]] | None = Field(
        default=None, max_length=20
    )

    @model_validator(mode="after")
    def _one_source(self) -> ReplyRequest:
        if (self.content is None) == (self.template_id is None):
            raise ValueError("give either content or template_id")
        return self


class ReplyResponse(BaseModel):
    message: str
    handoff: HandoffOut
    sent: ConversationMessage


class ConversationMessages(BaseModel):
    conversation_id: uuid.UUID
    messages: list[ConversationMessage]


class ResolveRequest(_Input):
    resolution_notes: Annotated[str, Field(max_length=5000)] | None = None
    return_to_bot: bool = True


class CancelRequest(_Input):
    reason: Annotated[str, Field(max_length=1000)] | None = None


class EscalateRequest(_Input):
    urgency: Urgency | None = None
    note: Annotated[str, Field(max_length=1000)] | None = None


# --- a bot's handoff settings ---------------------------------------------------------------

TRIGGER_REASONS = [r.value for r in Reason if r is not Reason.admin_override]


class TriggerUpdate(_Input):
    confidence_threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    keywords: (
        Annotated[
            list[
                Annotated[
                    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)
                ]
            ],
            Field(max_length=100),
        ]
        | None
    ) = None
    max_conversation_length: Annotated[int, Field(ge=2, le=1000)] | None = None
    max_conversation_minutes: Annotated[int, Field(ge=0, le=100_000)] | None = None
    disabled: list[Reason] | None = Field(
        default=None, description=f"triggers to switch off, from: {', '.join(TRIGGER_REASONS)}"
    )


class NotificationUpdate(_Input):
    methods: list[str] | None = None
    urgency: Urgency | None = Field(default=None, description="floor for this bot's handoffs")


class BotHandoffUpdate(_Input):
    enabled: bool | None = None
    triggers: TriggerUpdate | None = None
    notification_settings: NotificationUpdate | None = None


class BotHandoffSettings(BaseModel):
    bot_id: uuid.UUID
    enabled: bool
    triggers: dict[str, Any]
    notification_settings: dict[str, Any]


class BotHandoffEnvelope(BaseModel):
    message: str
    handoff: BotHandoffSettings


# --- response templates ---------------------------------------------------------------------


class TemplateCreate(_Input):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    body: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_MESSAGE_CHARS)
    ]


class TemplateUpdate(_Input):
    name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
        | None
    ) = None
    body: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_MESSAGE_CHARS),
        ]
        | None
    ) = None


class TemplateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    body: str
    placeholders: list[str] = []
    created_by_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class TemplateEnvelope(BaseModel):
    message: str | None = None
    template: TemplateOut


class TemplateList(BaseModel):
    templates: list[TemplateOut]
    pagination: Pagination
