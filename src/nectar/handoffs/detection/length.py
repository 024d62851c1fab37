"""`conversation_too_long`: this message would take the conversation past its limit."""

from __future__ import annotations

from nectar.handoffs.detection.base import Reason, TriggerSettings, TurnFacts
from nectar.handoffs.detection.findings import Finding


def conversation_too_long(turn: TurnFacts, settings: TriggerSettings) -> Finding | None:
    limit = settings.max_conversation_length
    # The user's message is stored whatever happens, so it counts; the bot's reply does not
    # (with the default 20: ten exchanges fit, the eleventh user message makes 21).
    total = turn.stored_messages + 1
    if limit <= 0 or total <= limit:
        return None
    return Finding(
        Reason.conversation_too_long,
        {"rule": "max_conversation_length", "messages": total, "limit": limit},
    )
