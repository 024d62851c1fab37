"""`error_pattern`: the bot is failing, and not just once.

A failure is a turn where the user says the last answer missed ("that's not what I asked",
"didn't help", "useless", "you keep repeating the setup steps"), asks essentially the same
question again, or where the bot's answer was itself a failure (a provider error, or a
confidence under the threshold). One failure is tolerated: people rephrase, and a clarified
question is often answered. The trigger fires on the second failure within a few turns (one
neutral turn may sit between the two). Turns before a human last spoke in the conversation do
not count: that episode was handled.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from nectar.chat.responders.base import HistoryItem
from nectar.handoffs.detection import text
from nectar.handoffs.detection.base import Reason, TriggerSettings, TurnFacts
from nectar.handoffs.detection.findings import Finding

# How many earlier user turns may hold the first failure: the previous one, or the one before
# it with a neutral turn between.
WINDOW = 2

_SIGNAL = re.compile(
    r"|".join(
        (
            r"\bnot (?:what|the (?:answer|thing)|the info(?:rmation)?) i (?:was )?(?:asked|asking|"
            r"meant|wanted|want|need|needed|said|looking for|was looking for)",
            r"\b(?:i )?(?:didnt|did not|never) (?:ask|say|mean)\b",
            r"\b(?:that|this|those|these|it|your (?:answer|steps|suggestion|reply|advice)|"
            r"none of (?:that|this|those|these)|which)\s+(?:still\s+)?(?:didnt|doesnt|did not|"
            r"does not|wont|isnt|is not|wasnt|was not|dont|do not)\s+(?:help|work|answer|fix|"
            r"solve|make sense|apply|helpful|right|correct|relevant)",
            r"\bnot (?:helpful|useful|relevant|correct|the (?:problem|issue|point|question))\b",
            r"\b(?:thats|that is|this is) not (?:it|right)\b",
            r"\b(?:no help|wrong answer|makes no sense|not even close|no idea what youre)\b",
            r"\b(?:useless|pointless|worthless|rubbish|garbage|nonsense|unhelpful|irrelevant|"
            r"hopeless)\b",
            r"\byou(?:re| are)? (?:still )?(?:not|arent) (?:understanding|listening|getting|"
            r"reading|helping|answering|making sense)",
            r"\byou (?:dont|do not|didnt|did not) (?:understand|get it|listen|read|answer)",
            r"\b(?:thats|that is|this is|its|it is|you gave|you sent|you said|got|getting|"
            r"giving|give|sending) (?:me )?(?:just |exactly |again )?the same (?:answer|thing|"
            r"reply|response|steps?|article|text|link|page|instructions)",
            r"^(?:no[,.!]? )?(?:wrong|incorrect|nope)(?:[.!,]|$)",
            r"^no[,.!]? i (?:mean|meant|said|asked)\b",
            r"\bare you (?:even )?(?:listening|reading)\b",
            r"\b(?:ill|i will|let me) ask (?:again|one more time)|"
            r"\b(?:im|i am|i asked|asking) (?:you )?(?:this )?again\b",
            r"\b(?:going nowhere|getting nowhere|not getting anywhere|waste of (?:my |our )?time|"
            r"going (?:round|around) in circles)\b",
            r"\bsame (?:answer|reply|response|steps|article|text) (?:again|as before|twice)\b",
            r"\byou(?:re| are| keep| kept)? (?:just )?(?:repeating|saying the same|"
            r"sending the same)",
            r"\byou (?:keep|kept) (?:saying|telling|sending|giving|suggesting|pointing|linking)",
            r"\b(?:i|we|you) already (?:said|told|tried|did|asked|checked|done|connected|"
            r"explained|mentioned|gave|answered)",
            r"\b(?:for|asking|ask(?:ed)?|asking you) (?:for )?the (?:second|third|fourth|fifth|"
            r"\d+(?:nd|rd|th)) time\b",
            r"\basked (?:this |that |you )?(?:twice|three times|(?:several|many|multiple) times)",
            r"\b(?:once again|again[!?]{2,}|i (?:asked|said) (?:this |that )?(?:already|before))",
            r"\bstill (?:nothing|doesnt|does not|not|no|the same|broken|stuck|failing|cant|"
            r"cannot|wont|missing|empty)\b",
            r"\b(?:read|answer) my (?:question|message)\b",
            r"\b(?:thats|that is|this is|thats just) (?:wrong|incorrect)\b",
            r"\bdid you (?:even )?read\b",
        )
    )
)
# Every phrase above contains one of these words; most messages contain none of them.
_SIGNAL_GATE = frozenset(
    """
    not didnt never doesnt wont isnt wasnt dont arent help wrong sense idea useless pointless
    worthless rubbish garbage nonsense unhelpful irrelevant hopeless same incorrect nope no
    listening reading ask again nowhere anywhere waste circles repeating keep kept already
    time twice times before still question message read
    """.split()
)
# Rephrasing the same question: most of its topic words again, almost nothing new.
MIN_SHARED_WORDS = 2
MIN_OVERLAP = 0.5
MAX_NEW_WORDS = 1


@lru_cache(maxsize=text.CACHE_SIZE)
def phrase_signal(message: str) -> str | None:
    """The words with which a message says the bot missed, or None."""
    normal = text.normalise(message)
    if _SIGNAL_GATE.isdisjoint(text.word_set(normal)):
        return None
    match = _SIGNAL.search(normal)
    return match.group(0) if match else None


def repeats(message: str, earlier: list[str]) -> str | None:
    """The earlier question this message asks again in other words, or None."""
    words = text.content_words(text.normalise(message))
    if len(words) < MIN_SHARED_WORDS:
        return None
    for previous in reversed(earlier):
        before = text.content_words(text.normalise(previous))
        shared = words & before
        if len(shared) < MIN_SHARED_WORDS:
            continue
        overlap = len(shared) / len(words | before)
        if overlap >= MIN_OVERLAP and len(words - before) <= MAX_NEW_WORDS:
            return previous
    return None


def user_signal(message: str, earlier: list[str]) -> dict[str, Any] | None:
    """Whether the user says, or shows by asking again, that the last answer missed."""
    if not earlier:  # nothing has been answered yet, so nothing can have missed
        return None
    phrase = phrase_signal(message)
    if phrase is not None:
        return {"kind": "complaint", "matched": phrase}
    again = repeats(message, earlier)
    if again is not None:
        return {"kind": "repeated_question", "matched": again}
    return None


def _episode(history: list[HistoryItem]) -> tuple[list[str], list[float | None]]:
    """The user messages since a human last spoke, and the confidence of the bot's answer to
    each (None when it was not answered)."""
    messages: list[str] = []
    confidences: list[float | None] = []
    for item in history:
        role = item.role
        if role == "user":
            messages.append(item.content)
            confidences.append(None)
        elif role == "bot":
            if confidences and confidences[-1] is None:
                confidences[-1] = item.confidence if item.confidence is not None else 1.0
        elif role in ("agent", "system"):
            messages, confidences = [], []
    return messages, confidences


def _failure(
    message: str, confidence: float | None, earlier: list[str], threshold: float
) -> dict[str, Any] | None:
    signal = user_signal(message, earlier)
    if signal is not None:
        return signal
    if (
        confidence is not None
        and confidence < threshold
        and not text.pleasantry(text.normalise(message))
    ):
        return {"kind": "low_confidence_answer", "score": round(confidence, 3)}
    return None


def error_pattern(turn: TurnFacts, settings: TriggerSettings) -> Finding | None:
    earlier, confidences = _episode(turn.history)
    if not earlier:
        return None
    threshold = settings.confidence_threshold
    answer = turn.answer
    if answer is not None and answer.error is not None:
        now: dict[str, Any] | None = {"kind": "provider_error", "error": answer.error[:200]}
    else:
        confidence = answer.confidence if answer is not None else None
        now = _failure(turn.message, confidence, earlier, threshold)
    if now is None:
        return None
    for back in range(1, min(WINDOW, len(earlier)) + 1):
        index = len(earlier) - back
        before = _failure(earlier[index], confidences[index], earlier[:index], threshold)
        if before is not None:
            return Finding(
                Reason.error_pattern,
                {
                    "rule": "second_failure",
                    "first": {"turns_ago": back, **before},
                    "second": now,
                },
            )
    return None
