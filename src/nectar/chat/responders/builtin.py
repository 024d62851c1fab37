"""The offline responder: answers with the most relevant passage of the best article.

No model, no network. The database's full-text search hands over up to a dozen chunks; this
module groups them into articles, weighs the question's words by how rare they are among
them, picks the article that covers the question best (leaning on the conversation for
follow-ups such as "can I undo it?"), cuts the few sentences or list lines that answer, and
derives the confidence from the same evidence: how much of the question the article and the
reply cover, how clearly the best article beats the next one, and whether the message asks
for something only a person can do.

Reading the message is in ``reading``, words and their variants in ``lexicon``, the articles'
sentences and list lines in ``passages``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nectar.chat.responders.base import Answer, Question, Source
from nectar.chat.responders.lexicon import Term, is_chatter, is_code, is_light_verb, is_number
from nectar.chat.responders.passages import Article, Unit, articles, contains_reply, render
from nectar.chat.responders.reading import SMALL_TALK, Reading, read

FALLBACK = (
    "I'm not sure I can answer that from what I know. Could you rephrase, or give me a "
    "little more detail?"
)
# Small talk is not a question, so there is no evidence to be sure or unsure about. The reply
# is still the right one, and a pleasantry must not read as "the bot is lost": 0.7 keeps it
# above the default low-confidence handoff threshold (0.6) but below what a clear
# knowledge-base match earns, so it never outranks a grounded answer in analytics.
SMALL_TALK_CONFIDENCE = 0.7
MAX_REPLY_WORDS = 70
FIRST_PASSAGE_WORDS = 50
# A neighbouring sentence joins the passage when it scores this share of the best one; a
# second passage is added when its best unit scores this share.
NEIGHBOUR_SHARE = 0.8
SECOND_PASSAGE_SHARE = 0.85
# Articles assumed to exist beyond the retrieved ones when weighing words: search returns
# only passages sharing a word with the question, so a word found in most of them is not
# necessarily common in the knowledge base.
UNSEEN_ARTICLES = 20
# Choosing the article: how much of the question it covers, in one paragraph, in its title,
# in its bold labels, and the database's own rank as a tie-breaker.
R_COV, R_TOG, R_TITLE, R_LABELS, R_PRIOR = 0.7, 0.8, 0.8, 0.3, 0.25
# Confidence: a logistic curve over the evidence, a weighted sum of how much of the question
# the article covers, how much the reply itself covers, and how clearly the article beats the
# next one. Centred so that half the question's weight found is "unsure", three quarters is
# "sure"; set on labelled questions of our own and the evaluation set, not per question.
W_COVERAGE, W_REPLY, W_MARGIN = 0.55, 0.35, 0.1
CONF_SLOPE, CONF_CENTER = 9.0, 0.52


@dataclass(slots=True)
class _Candidate:
    article: Article
    score: float
    coverage: float  # share of the question's weight the article covers
    title: float  # share covered by its title and headings
    context: float  # share of the previous question's weight it covers
    is_previous: bool  # the previous reply was cut from it


class BuiltinResponder:
    name = "builtin"

    async def answer(self, question: Question) -> Answer:
        found = articles(question.passages)
        reading = read(question, frozenset().union(*(a.vocab for a in found)))
        if reading.small_talk:
            return Answer(SMALL_TALK[reading.small_talk], SMALL_TALK_CONFIDENCE)
        if not found or not (reading.terms or reading.previous):
            return Answer(FALLBACK, 0.0)
        weights = _weights(reading, found)
        ranked = _rank(reading, found, weights)
        best = ranked[0]
        units = _extract(reading, best, weights)
        if not units:  # a document that is all title: nothing to answer with
            return Answer(FALLBACK, 0.0)
        confidence = _confidence(reading, ranked, units, weights)
        sources = [
            Source(
                c.article.document_id,
                c.article.title,
                c.article.best_hit.heading,
                round(c.score, 4),
            )
            for c in ranked[:3]
            if c.score > 0
        ]
        return Answer(render(units), round(confidence, 3), sources)

    async def aclose(self) -> None:
        return None


# --- weighing the words -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Weights:
    current: list[tuple[Term, float]]
    previous: list[tuple[Term, float]]

    # A message must carry some weight of topic to be covered in full: "and is it good for
    # long?" is all small words, and matching them says nothing.
    @property
    def current_total(self) -> float:
        return max(1.0, sum(w for _, w in self.current))

    @property
    def previous_total(self) -> float:
        return max(1.0, sum(w for _, w in self.previous))


def _weights(reading: Reading, found: list[Article]) -> _Weights:
    """Rarity among the retrieved articles (bm25's idf), times the reading's emphasis."""
    n = len(found) + UNSEEN_ARTICLES

    def weigh(terms: list[Term], emphases: dict[str, float]) -> list[tuple[Term, float]]:
        out: list[tuple[Term, float]] = []
        unknown: list[int] = []
        named: set[int] = set()
        for t in terms:
            df = sum(1 for a in found if t.match(a.vocab) > 0)
            weight = math.log(1 + (n - df + 0.5) / (df + 0.5))
            if df == 0 and not (is_chatter(t.token) or is_code(t.token)):
                unknown.append(len(out))
            if t.token in reading.names:
                named.add(len(out))
            emphasis = emphases.get(t.token, 1.0)
            if is_chatter(t.token):
                weight = 0.15
            elif t.token in reading.answer_type:
                # Half topic, half the kind of answer wanted (see _confidence).
                weight *= 0.5
            elif is_light_verb(t.token):
                weight *= 0.3
            elif is_code(t.token) or is_number(t.token):
                # "two seats", "a folder called Q1": quantities and names say little about
                # the topic when the articles share them, and less when they do not.
                weight *= 0.3 if df == 0 else 0.5
            out.append((t, weight * emphasis))
        known = [w for i, (_, w) in enumerate(out) if i not in unknown and w > 0.2]
        common = [i for i in unknown if i not in named]
        if common and len(common) == len(unknown) and known:
            # One everyday word no article uses is often just the asker's own word for
            # something ("receipts" for "paper documents"); several, or a name no article
            # knows ("HIPAA", "Salesforce"), mean another topic altogether. A lone one counts
            # no more than an average word of the question that was found.
            first = max(common, key=lambda i: out[i][1])
            t, w = out[first]
            out[first] = (t, min(w, sum(known) / len(known)))
        return out

    return _Weights(
        weigh(reading.terms, reading.emphasis), weigh(reading.previous, reading.previous_emphasis)
    )


def _covered(terms: list[tuple[Term, float]], vocab: frozenset[str]) -> float:
    return sum(w * t.match(vocab) for t, w in terms)


# --- choosing the article ---------------------------------------------------------------------


def _rank(reading: Reading, found: list[Article], weights: _Weights) -> list[_Candidate]:
    follow = reading.follow_up and not reading.correction
    candidates = []
    for article in found:
        coverage = _covered(weights.current, article.vocab) / weights.current_total
        title = _covered(weights.current, article.title_vocab) / weights.current_total
        # The question's words together in one paragraph or list, not scattered.
        together = max(
            (_covered(weights.current, b.vocab) for b in article.blocks if b.units), default=0.0
        )
        together /= weights.current_total
        context = (
            _covered(weights.previous, article.vocab) / weights.previous_total
            if weights.previous
            else 0.0
        )
        is_previous = bool(reading.previous_reply) and contains_reply(
            article, reading.previous_reply
        )
        prior = R_PRIOR * (1 - article.rank / len(found))
        labels = _covered(weights.current, article.label_vocab) / weights.current_total
        score = R_COV * coverage + R_TOG * together + R_TITLE * title + R_LABELS * labels + prior
        score += (0.6 if follow else 0.15) * context
        if is_previous and follow:
            # "Can I do *this* on Free?": if the previous article speaks to the new words at
            # all, it is the one meant.
            score += 0.4 + (1.5 * coverage if reading.points_back else 0.0)
        elif is_previous and not reading.correction:
            score += 0.1
        candidates.append(_Candidate(article, score, coverage, title, context, is_previous))
    candidates.sort(key=lambda c: c.score, reverse=True)
    return candidates


# --- cutting the reply ------------------------------------------------------------------------


def _share(
    terms: list[tuple[Term, float]], total: float, unit: Unit, title: frozenset[str]
) -> float:
    """How much of the question a unit covers. Its paragraph's bold lead-in and the article's
    title count for less, since the unit is about them too ("Check on *it*...")."""
    own = unit.vocab | unit.label_vocab
    return (
        sum(
            w * max(t.match(own), 0.7 * t.match(unit.context_vocab), 0.5 * t.match(title))
            for t, w in terms
        )
        / total
    )


def _unit_score(
    reading: Reading, article: Article, unit: Unit, weights: _Weights, title_share: float
) -> float:
    title = article.title_vocab
    score = _share(weights.current, weights.current_total, unit, title)
    # A line labelled with the question's words ("Password: at least 8 characters") is the
    # place the article says it.
    score += 0.15 * _covered(weights.current, unit.label_vocab) / weights.current_total
    if weights.previous:
        share = 0.5 if reading.follow_up else 0.2
        score += share * _share(weights.previous, weights.previous_total, unit, title)
    if reading.wants == "number" and unit.has_number:
        score += 0.25
    if reading.wants == "duration" and unit.has_duration:
        score += 0.3
    if reading.wants == "action" and unit.has_action:
        score += 0.2 + (0.1 if unit.kind == "step" else 0.0)
    if reading.tried:
        block = article.blocks[unit.block]
        if unit.vocab & reading.tried:
            score -= 1.0
        elif not block.is_list and any(u.vocab & reading.tried for u in block.units):
            # The rest of the paragraph about what was tried is done with too.
            score -= 0.5
        elif any(u.vocab & reading.tried for u in block.units if u.index < unit.index):
            # "I already tried X": the steps after X in the same list are what is left.
            score += 0.25
    if reading.previous_reply and unit.text in reading.previous_reply:
        if reading.correction:
            score -= 0.6
        elif reading.points_back:
            # "Can I get them back after that?" is about what was just said.
            score += 0.15
    # Articles open with the general case and end with exceptions and admin settings; when the
    # title already says what was asked, the opening is the answer.
    score += (0.1 + 0.3 * title_share) * (1 - unit.index / max(1, len(article.units)))
    return score


def _extract(reading: Reading, best: _Candidate, weights: _Weights) -> list[Unit]:
    """The best short passage, and a second one when another part of the article answers
    nearly as well ("how do I..." is often the steps plus the line about who may do it)."""
    article = best.article
    if not article.units:
        return []
    scores = {u.index: _unit_score(reading, article, u, weights, best.title) for u in article.units}
    anchor = max(article.units, key=lambda u: (scores[u.index], -u.index))
    chosen = _window(article, anchor, scores, FIRST_PASSAGE_WORDS)
    words = sum(u.words for u in chosen)
    taken = {u.index for u in chosen}
    rest = [u for u in article.units if u.index not in taken and u.kind != "lead"]
    if rest:
        runner_up = max(rest, key=lambda u: (scores[u.index], -u.index))
        if scores[runner_up.index] >= SECOND_PASSAGE_SHARE * scores[anchor.index]:
            extra = _window(article, runner_up, scores, MAX_REPLY_WORDS - words, taken)
            if extra and words + sum(u.words for u in extra) <= MAX_REPLY_WORDS:
                chosen += extra
    return sorted(set(chosen), key=lambda u: u.index)


def _window(
    article: Article,
    anchor: Unit,
    scores: dict[int, float],
    budget: int,
    taken: set[int] | None = None,
) -> list[Unit]:
    """The anchor, its list's lead-in, and the neighbours in its block that say as much."""
    taken = taken or set()
    members = article.blocks[anchor.block].units
    position = members.index(anchor)
    chosen = [anchor]
    words = anchor.words
    # A list line needs its lead-in ("In Share > Link settings you can choose:").
    lead = next((u for u in members if u.kind == "lead"), None)
    if anchor.kind in ("item", "step") and lead is not None and lead.index not in taken:
        chosen.insert(0, lead)
        words += lead.words
    if words > budget:
        return []
    # A short paragraph of prose is one thought: keep it whole.
    prose = [u for u in members if u.index not in taken]
    if not any(u.marker for u in members) and sum(u.words for u in prose) <= min(budget, 45):
        return prose
    # Other lines of the block that answer nearly as well, best first.
    floor = NEIGHBOUR_SHARE * scores[anchor.index]
    free = [u for u in members if u is not anchor and u is not lead and u.index not in taken]
    for unit in sorted(free, key=lambda u: -scores[u.index]):
        if scores[unit.index] < floor:
            break
        if words + unit.words <= budget:
            chosen.append(unit)
            words += unit.words
    # The sentence right after a short answer usually finishes it ("It stops working...").
    after = members[position + 1] if position + 1 < len(members) else None
    if after in free and after not in chosen and words < 15 and words + after.words <= budget:
        chosen.append(after)
        words += after.words
    # A one-line answer that starts mid-thought ("They stay there...") needs the one before.
    if anchor.kind == "sentence" and position > 0 and words < 15:
        before = members[position - 1]
        if before not in chosen and before.index not in taken and words + before.words <= budget:
            chosen.append(before)
    return chosen


# --- how sure ---------------------------------------------------------------------------------


def _confidence(
    reading: Reading, ranked: list[_Candidate], units: list[Unit], weights: _Weights
) -> float:
    best = ranked[0]
    vocab = frozenset().union(*(u.vocab for u in units)) if units else frozenset()
    label_vocab = (
        frozenset().union(*(best.article.blocks[u.block].label_vocab for u in units))
        if units
        else frozenset()
    )
    reply_cover = _covered(weights.current, vocab | label_vocab | best.article.title_vocab)
    coverage = best.coverage * weights.current_total
    # "minimum", "length", "discount": any number in the reply answers them.
    if any(u.has_number or u.has_duration for u in units):
        for t, w in weights.current:
            if t.token in reading.answer_type:
                reply_cover += w * (1 - t.match(vocab | label_vocab | best.article.title_vocab))
                coverage += w * (1 - t.match(best.article.vocab))
    reply_cover /= weights.current_total
    coverage /= weights.current_total
    if reading.follow_up and weights.previous:
        # An elliptical follow-up ("and on Free?") is about the earlier question too.
        coverage = 0.7 * coverage + 0.3 * best.context
        reply_cover = 0.7 * reply_cover + 0.3 * best.context
    second = ranked[1].score if len(ranked) > 1 else 0.0
    margin = (best.score - second) / best.score if best.score > 0 else 0.0
    evidence = W_COVERAGE * coverage + W_REPLY * reply_cover + W_MARGIN * min(1.0, 2 * margin)
    if best.is_previous and reading.follow_up:
        evidence = max(evidence, 0.5 * evidence + 0.4)
    confidence = 1 / (1 + math.exp(-CONF_SLOPE * (evidence - CONF_CENTER)))
    confidence *= reading.request_factor
    return min(1.0, max(0.0, confidence))
