"""The offline responder: answers with the most relevant passage of the best article.

No model, no network. Retrieval comes from the database's full-text search; this module
re-ranks the retrieved passages against the question (and, for follow-ups, the previous
question), picks the lines of the best passage that answer it, and derives a confidence
from how much of the question the passage actually covers.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

from nectar.chat.responders.base import Answer, Question, Source
from nectar.knowledge.search import Hit, query_terms

FALLBACK = (
    "I'm not sure I can answer that from what I know. Could you rephrase, or give me a "
    "little more detail?"
)
MAX_REPLY_WORDS = 70
_WORD = re.compile(r"[a-z0-9]+")


def stem(word: str) -> str:
    """A light suffix stripper, enough to match 'syncing' with 'sync' and 'links' with 'link'."""
    for suffix in ("ing", "edly", "ed", "ies", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if suffix == "ies":
                word += "y"
            break
    return word


def stems(text: str) -> list[str]:
    return [stem(w) for w in query_terms(text)]


def plain(text: str) -> str:
    """Markdown emphasis and list markers out; the words and menu paths stay."""
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", text)
    text = re.sub(r"(?<!\w)[*_]([^*_\n]+)[*_](?!\w)", r"\1", text)
    text = re.sub(r"`([^`]+)`", r"\1", text)
    return text.strip()


def _units(body: str) -> list[str]:
    """Lines and sentences: the pieces a reply is assembled from."""
    units: list[str] = []
    for line in body.splitlines():
        line = line.strip()
        if not line:
            continue
        if re.match(r"^([-*+]|\d+[.)])\s", line):
            units.append(line)
            continue
        units.extend(s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z*\"'(])", line) if s)
    return units


@dataclass
class _Scored:
    hit: Hit
    score: float
    coverage: float


class BuiltinResponder:
    name = "builtin"

    async def answer(self, question: Question) -> Answer:
        current = stems(question.message)
        previous = next(
            (stems(h.content) for h in reversed(question.history) if h.role == "user"), []
        )
        if not question.passages or not current:
            return Answer(FALLBACK, 0.0)
        scored = self._rank(question.passages, current, previous)
        best = scored[0]
        reply = self._extract(best.hit, current + previous)
        sources = [
            Source(s.hit.document_id, s.hit.title, s.hit.heading, round(s.score, 4))
            for s in scored[:3]
            if s.score > 0
        ]
        return Answer(reply, round(best.coverage, 3), sources)

    def _rank(self, hits: list[Hit], current: list[str], previous: list[str]) -> list[_Scored]:
        docs = [Counter(stems(h.heading + " " + h.body)) for h in hits]
        n = len(docs)

        def idf(term: str) -> float:
            df = sum(1 for d in docs if term in d)
            return math.log(1 + (n + 1) / (df + 0.5))

        weights = {t: idf(t) for t in set(current) | set(previous)}
        total = sum(weights[t] for t in set(current)) or 1.0
        ranked = []
        for hit, counts in zip(hits, docs, strict=True):
            now = sum(weights[t] for t in set(current) if t in counts)
            before = sum(weights[t] for t in set(previous) if t in counts)
            score = now + 0.4 * before
            ranked.append(_Scored(hit, score, now / total))
        ranked.sort(key=lambda s: s.score, reverse=True)
        return ranked

    def _extract(self, hit: Hit, terms: list[str]) -> str:
        units = _units(hit.body)
        if not units:
            return plain(hit.body)
        wanted = set(terms)
        scores = [len(wanted & {stem(w) for w in _WORD.findall(u.lower())}) for u in units]
        start = max(range(len(units)), key=lambda i: (scores[i], -i))
        chosen = [start]
        words = len(units[start].split())
        # Grow around the best unit while it stays short: neighbours carry the context.
        lo, hi = start - 1, start + 1
        while words < MAX_REPLY_WORDS and (lo >= 0 or hi < len(units)):
            pick = hi if hi < len(units) and (lo < 0 or scores[hi] >= scores[lo]) else lo
            n = len(units[pick].split())
            if words + n > MAX_REPLY_WORDS:
                break
            chosen.append(pick)
            words += n
            if pick == hi:
                hi += 1
            else:
                lo -= 1
        return "\n".join(plain(units[i]) for i in sorted(chosen))

    async def aclose(self) -> None:
        return None
