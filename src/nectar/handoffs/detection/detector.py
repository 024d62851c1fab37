from __future__ import annotations

from nectar.handoffs.detection.base import Decision, TriggerSettings, TurnFacts


def detect(turn: TurnFacts, settings: TriggerSettings) -> Decision | None:
    return None
