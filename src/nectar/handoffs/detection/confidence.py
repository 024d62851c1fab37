"""`low_confidence`: the answer is too doubtful to send.

Fires when the responder's confidence is under the bot's threshold, except when there was
nothing to be sure about (a thanks, a greeting, "no need for an agent, I figured it out") and
when the provider failed (a timeout is not doubt about the question: the fallback reply asks
the user to try again, and a second failure in a row is an `error_pattern`). A message that
says the previous answer missed is tolerated once, as `error_pattern` tolerates it: a
clarified question often gets a good answer on the next turn.

It also fires, whatever the confidence, when the message reports a critical situation (an
account taken over, data being lost right now, a legal threat): a knowledge-base article is
not what such a user needs first, however well its words match.
"""

from __future__ import annotations

from nectar.handoffs.detection import errors, text, urgency
from nectar.handoffs.detection.base import Reason, TriggerSettings, TurnFacts
from nectar.handoffs.detection.findings import Finding


def low_confidence(turn: TurnFacts, settings: TriggerSettings) -> Finding | None:
    answer = turn.answer
    if answer is None:
        return None
    normal = text.normalise(turn.message)
    critical = urgency.is_critical(turn.message)
    if critical and not text.is_how_to(normal) and not text.hypothetical(normal, normal):
        return Finding(
            Reason.low_confidence,
            {
                "rule": "critical_situation",
                "matched": critical,
                "score": answer.confidence,
                "threshold": settings.confidence_threshold,
            },
        )
    # A provider failure is not the knowledge base's doubt: the fallback asks the user to try
    # again, and `error_pattern` hands off when it fails a second time.
    if answer.error is not None or answer.confidence >= settings.confidence_threshold:
        return None
    if text.pleasantry(normal):
        return None
    earlier = [h.content for h in turn.history if h.role == "user"]
    first_signal = errors.user_signal(turn.message, earlier) is not None and (
        errors.error_pattern(turn, settings) is None
    )
    if first_signal:
        return None
    return Finding(
        Reason.low_confidence,
        {
            "rule": "below_threshold",
            "score": answer.confidence,
            "threshold": settings.confidence_threshold,
        },
    )
