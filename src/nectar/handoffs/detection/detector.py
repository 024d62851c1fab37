"""Every trigger against one turn; at most one decision.

The triggers run in order of how clearly they speak for the user, and the first that fires
decides:

1. `bot_command`      the user typed /human, /agent or /handoff;
2. `explicit_request` the user asked for a person in words;
3. `keyword_detected` a phrase the bot's owner configured;
4. `error_pattern`    the second sign that the bot is failing;
5. `complex_query`    a multi-step change across systems (its answer is always doubtful, so
                      it must come before the confidence check to be named for what it is);
6. `conversation_too_long`, 7. `time_based`: the bot owner's limits, which hand off whatever
                      was said; a doubtful answer on the same turn adds nothing to them;
8. `low_confidence`   the answer is too doubtful to send.

`admin_override` is raised by a person, never here. Urgency comes from the reason and the
words (see `urgency`). Pure Python and regular expressions compiled at import: a few tens of
microseconds per turn.
"""

from __future__ import annotations

from collections.abc import Callable

from nectar.handoffs.detection import urgency
from nectar.handoffs.detection.base import Decision, Reason, TriggerSettings, TurnFacts
from nectar.handoffs.detection.commands import bot_command
from nectar.handoffs.detection.complexity import complex_query
from nectar.handoffs.detection.confidence import low_confidence
from nectar.handoffs.detection.duration import time_based
from nectar.handoffs.detection.errors import error_pattern
from nectar.handoffs.detection.findings import Finding
from nectar.handoffs.detection.length import conversation_too_long
from nectar.handoffs.detection.requests import explicit_request, keyword_detected

Trigger = Callable[[TurnFacts, TriggerSettings], Finding | None]

TRIGGERS: tuple[tuple[Reason, Trigger], ...] = (
    (Reason.bot_command, bot_command),
    (Reason.explicit_request, explicit_request),
    (Reason.keyword_detected, keyword_detected),
    (Reason.error_pattern, error_pattern),
    (Reason.complex_query, complex_query),
    (Reason.conversation_too_long, conversation_too_long),
    (Reason.time_based, time_based),
    (Reason.low_confidence, low_confidence),
)


def detect(turn: TurnFacts, settings: TriggerSettings) -> Decision | None:
    """The first trigger that fires on this turn, with its urgency and evidence; or None."""
    if not settings.enabled:
        return None
    for reason, trigger in TRIGGERS:
        if reason in settings.disabled:  # a StrEnum: equal to, and hashed as, its value
            continue
        finding = trigger(turn, settings)
        if finding is None:
            continue
        level, rules = urgency.urgency_for(finding.reason, turn)
        evidence = {**finding.evidence, "trigger": finding.reason.value, "urgency_rules": rules}
        return Decision(finding.reason, level, evidence)
    return None
