"""The one small interface every notification channel implements.

A channel gets a ``Delivery`` (what happened to which handoff, for whom) and either returns
a ``SendResult`` or raises ``DeliveryFailed``. It never swallows an error: the worker decides
about retries from what the channel raised.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol


class EventType(enum.StrEnum):
    created = "handoff.created"
    assigned = "handoff.assigned"
    resolved = "handoff.resolved"
    escalated = "handoff.escalated"
    cancelled = "handoff.cancelled"
    test = "test"


@dataclass(frozen=True, slots=True)
class HandoffView:
    """What a notification may say about a handoff. An external channel gets it (and the
    delivery's ``data``) already scrubbed of PII (emails, phones, cards, IBANs, SSNs) by the
    worker, so it sends what it is given."""

    id: str
    bot_id: str
    bot_name: str
    conversation_id: str
    status: str
    reason: str
    urgency: str
    # The seed's urgency_levels mapping: info, warning, error or critical.
    severity: str
    summary: str
    created_at: str
    url: str
    assignee_name: str | None = None
    resolution_notes: str | None = None
    user_name: str | None = None
    # The last few messages, oldest first: [{"role", "content"}].
    transcript: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    channel: str
    event: EventType
    handoff: HandoffView | None  # None only for test notifications
    # in_app: a user id; email: an address; webhook: the endpoint URL; others: the integration
    recipient: str
    attempt: int
    # Stable across retries of this delivery: receivers use it to drop duplicates.
    idempotency_key: str
    # What the platform told us earlier about this handoff (Zendesk ticket id, ServiceNow
    # sys_id...), so follow-ups update the same record.
    external_refs: dict[str, Any] = field(default_factory=dict)
    # Event details (e.g. who accepted it, the previous urgency on escalation).
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendResult:
    status_code: int | None = None
    # Anything to remember for follow-ups, merged into the handoff's external_refs.
    external_refs: dict[str, Any] = field(default_factory=dict)
    detail: str = ""


class DeliveryFailed(Exception):
    """The send did not succeed. ``retriable``: 408/429/5xx/timeouts/connection errors (try
    again later, after ``retry_after`` seconds if the server said); otherwise give up now."""

    def __init__(
        self,
        message: str,
        *,
        retriable: bool,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.status_code = status_code
        self.retry_after = retry_after


class Channel(Protocol):
    name: ClassVar[str]
    # True for channels that leave our system: the worker PII-scrubs their deliveries.
    external: ClassVar[bool]

    async def send(self, delivery: Delivery) -> SendResult: ...

    async def aclose(self) -> None: ...
