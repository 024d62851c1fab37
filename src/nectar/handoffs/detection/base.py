"""What the handoff detector sees and decides. Each trigger is a small unit over these."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nectar.chat.responders.base import Answer, HistoryItem


class Reason(enum.StrEnum):
    low_confidence = "low_confidence"
    keyword_detected = "keyword_detected"
    explicit_request = "explicit_request"
    error_pattern = "error_pattern"
    complex_query = "complex_query"
    bot_command = "bot_command"
    conversation_too_long = "conversation_too_long"
    time_based = "time_based"
    admin_override = "admin_override"


class Urgency(enum.StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


URGENCY_ORDER = (Urgency.low, Urgency.medium, Urgency.high, Urgency.critical)


@dataclass(frozen=True, slots=True)
class TriggerSettings:
    """A bot's effective trigger configuration (config defaults overridden per bot)."""

    enabled: bool = True
    confidence_threshold: float = 0.6
    # Phrases matched at word boundaries, not negated, not a how-to question.
    keywords: tuple[str, ...] = ()
    max_conversation_length: int = 20
    # 0 = never escalate for duration.
    max_conversation_minutes: int = 0
    # Reasons switched off for this bot (e.g. {"keyword_detected"}).
    disabled: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class TurnFacts:
    """One user turn, as the detector sees it."""

    message: str
    # Earlier messages of the conversation, oldest first (user, bot, agent, system), with the
    # bot answers' confidences.
    history: list[HistoryItem]
    # The bot's answer to this message; None when the responder was not asked.
    answer: Answer | None
    # Messages stored in the conversation before this turn.
    stored_messages: int
    conversation_started_at: datetime
    now: datetime


@dataclass(frozen=True, slots=True)
class Decision:
    reason: Reason
    urgency: Urgency
    # Why it fired, for the admin: which rule, which words, which score.
    evidence: dict[str, Any] = field(default_factory=dict)
