"""`time_based`: the conversation has gone on longer than the configured minutes."""

from __future__ import annotations

from nectar.handoffs.detection.base import Reason, TriggerSettings, TurnFacts
from nectar.handoffs.detection.findings import Finding


def time_based(turn: TurnFacts, settings: TriggerSettings) -> Finding | None:
    limit = settings.max_conversation_minutes
    if limit <= 0:
        return None
    minutes = (turn.now - turn.conversation_started_at).total_seconds() / 60
    if minutes <= limit:
        return None
    return Finding(
        Reason.time_based,
        {"rule": "max_conversation_minutes", "minutes": round(minutes, 1), "limit": limit},
    )
