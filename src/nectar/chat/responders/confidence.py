"""How sure a generated answer is, for responders that call a language model.

Three signals: the model's token log-probabilities (when the server returns them), how much
of the question the retrieved passages cover, and whether the answer says it does not know.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from nectar.chat.responders.base import HistoryItem
from nectar.knowledge.search import Hit, query_terms

Refusal = Literal["none", "hedge", "refusal"]

# An answer without passages is the model's own knowledge: never confident enough to stand.
NO_EVIDENCE_CAP = 0.2
# "I don't know" is honest, but it is not an answer.
REFUSAL_CAP = 0.1
# The answer covers part of the question and says another part is missing.
HEDGE_FACTOR = 0.7
# finish_reason "length": the answer was cut off by max_tokens.
TRUNCATED_FACTOR = 0.8
MIN_LOGPROB = -10.0

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n")
# What the model was given to answer from, as it tends to name it. A determiner is required:
# "exported documents don't include comments" is an answer, "the passages don't" is not.
_SOURCES = (
    r"(?:the|these|those|my|your|provided|available) (?:provided |available |given )?"
    r"(?:passages?|documentation|docs|context|knowledge base|information|articles?|sources?)"
)
_REFUSAL = re.compile(
    r"\b(?:"
    r"i (?:do not|don't) know"
    r"|i(?:'m| am) (?:not sure|unsure|unable to|not able to)"
    r"|i (?:cannot|can't|could not|couldn't) (?:find|answer|tell|say|help with)"
    r"|i (?:do not|don't) have (?:enough |any )?(?:information|details|data)"
    rf"|{_SOURCES}(?: provided| given| above| available)? "
    r"(?:do not|don't|does not|doesn't|did not|didn't) "
    r"(?:contain|include|mention|cover|say|specify|provide|address|explain|have)"
    r"|(?:not|isn't|is not|aren't|are not) (?:mentioned|covered|included|specified|addressed)"
    rf" in (?:any of )?{_SOURCES}"
    r"|(?:there is|there's|there was|i have|i found|i could find) no (?:information|mention)"
    r")",
    re.IGNORECASE,
)


def token_confidence(logprobs: list[float]) -> float:
    """The geometric mean of the tokens' probabilities, exp(mean log p).

    Unlike the product (the sequence probability) it does not punish a long answer for its
    length, and unlike the minimum it is not decided by one token where several phrasings
    were equally fine; a run of tokens the model was unsure about still pulls it down.
    Log-probabilities are floored so one token a server reports as -9999 cannot zero it.
    """
    mean = sum(max(MIN_LOGPROB, min(0.0, lp)) for lp in logprobs) / len(logprobs)
    return math.exp(mean)


def retrieval_evidence(message: str, history: list[HistoryItem], hits: list[Hit]) -> float:
    """How much of the question the best passage covers: the share of the question's content
    words (of the previous user message, for a follow-up without any) found in it."""
    if not hits:
        return 0.0
    terms = _stems(message) or _stems(_previous_user_message(history))
    if not terms:
        return 0.5
    best = 0.0
    for hit in hits:
        words = {_stem(w) for w in _WORD.findall(f"{hit.title} {hit.heading} {hit.body}".lower())}
        best = max(best, len(terms & words) / len(terms))
    return best


def refusal_kind(text: str) -> Refusal:
    """Whether the answer says it does not know: in its first sentence (a refusal) or
    about some part further on (a hedge)."""
    normal = text.replace("\u2019", "'").replace("\u2018", "'").strip()
    match = _REFUSAL.search(normal)
    if match is None:
        return "none"
    first_sentence = _SENTENCE_END.split(normal, maxsplit=1)[0]
    return "refusal" if match.start() < len(first_sentence) else "hedge"


def combine(
    tokens: float | None,
    evidence: float,
    has_passages: bool,
    refusal: Refusal,
    truncated: bool,
) -> float:
    """One number in [0, 1] from everything known about a generated answer."""
    # With log-probabilities: the model's own certainty, discounted when retrieval found
    # little of the question (a fluent answer over passages that miss the point is a guess).
    # Without: the model answered although told to refuse otherwise, so trust it as far as
    # the passages cover the question.
    value = tokens * (0.4 + 0.6 * evidence) if tokens is not None else 0.3 + 0.6 * evidence
    if not has_passages:
        value = min(value, NO_EVIDENCE_CAP)
    if refusal == "refusal":
        value = min(value, REFUSAL_CAP)
    elif refusal == "hedge":
        value *= HEDGE_FACTOR
    if truncated:
        value *= TRUNCATED_FACTOR
    return max(0.0, min(1.0, value))


def _stems(text: str) -> set[str]:
    return {_stem(word) for word in query_terms(text)}


def _stem(word: str) -> str:
    """Enough to match 'updates', 'updated', 'updating' with 'update' and 'stopped' with
    'stop'."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and not word.endswith("ss") and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if suffix in ("ing", "ed") and word[-1] == word[-2] and word[-1] not in "aeiouls":
                word = word[:-1]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def _previous_user_message(history: list[HistoryItem]) -> str:
    return next((h.content for h in reversed(history) if h.role == "user"), "")
