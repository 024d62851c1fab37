"""Small builders for detector tests: a turn, a history, the default settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from nectar.chat.responders.base import Answer, HistoryItem
from nectar.handoffs.detection import detect
from nectar.handoffs.detection.base import Decision, TriggerSettings, TurnFacts

STARTED = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
# What config/config.yml gives every bot.
DEFAULTS = TriggerSettings(
    keywords=("speak to a person", "talk to a human", "human agent", "real person", "live agent")
)
SURE = 0.9
UNSURE = 0.2


def history(*exchanges: tuple[str, float]) -> list[HistoryItem]:
    """User messages, each followed by a bot answer with the given confidence."""
    items: list[HistoryItem] = []
    for message, confidence in exchanges:
        items += [HistoryItem("user", message), HistoryItem("bot", "An answer.", confidence)]
    return items


def turn(
    message: str,
    *,
    past: list[HistoryItem] | None = None,
    confidence: float | None = SURE,
    error: str | None = None,
    stored: int | None = None,
    minutes: float = 1.0,
) -> TurnFacts:
    items = past or []
    answer = None if confidence is None else Answer("An answer.", confidence, error=error)
    return TurnFacts(
        message=message,
        history=items,
        answer=answer,
        stored_messages=len(items) if stored is None else stored,
        conversation_started_at=STARTED,
        now=STARTED + timedelta(minutes=minutes),
    )


def decide(
    message: str,
    settings: TriggerSettings = DEFAULTS,
    *,
    past: list[HistoryItem] | None = None,
    confidence: float | None = SURE,
    error: str | None = None,
    stored: int | None = None,
    minutes: float = 1.0,
) -> Decision | None:
    facts = turn(
        message, past=past, confidence=confidence, error=error, stored=stored, minutes=minutes
    )
    decision = detect(facts, settings)
    if decision is not None:
        json.dumps(decision.evidence)  # stored on the handoff as JSON
    return decision


def converse(
    messages: list[tuple[str, float]], settings: TriggerSettings = DEFAULTS
) -> tuple[int, Decision] | None:
    """Replay user messages (each with its answer's confidence) until the first handoff."""
    items: list[HistoryItem] = []
    for number, (message, confidence) in enumerate(messages, 1):
        decision = detect(turn(message, past=list(items), confidence=confidence), settings)
        if decision is not None:
            json.dumps(decision.evidence)
            return number, decision
        items += [HistoryItem("user", message), HistoryItem("bot", "An answer.", confidence)]
    return None
