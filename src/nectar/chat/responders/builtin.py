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
from collections.abc import Iterable
from dataclasses import dataclass

from nectar.chat.responders.base import Answer, Question, Source
from nectar.chat.responders.lexicon import Term, is_chatter, is_code, is_light_verb, is_number
from nectar.chat.responders.passages import (
    FIRST_BLOCK,
    IN_LABELS,
    IN_TEXT,
    IN_TITLE,
    Article,
    Unit,
    articles,
    contains_reply,
    render,
    reply_lines,
)
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
# the reply itself covers (what the asker gets, so it weighs most), how much the article
# covers, and how clearly the article beats the next one. Words that only frame the question
# are not missing when absent (see _shares_of_question). Centred so that half the question's
# weight found is "unsure", three quarters is "sure"; set on labelled questions of our own
# and the evaluation set, not per question.
W_COVERAGE, W_REPLY, W_MARGIN = 0.35, 0.55, 0.1
CONF_SLOPE, CONF_CENTER = 9.0, 0.52


@dataclass(slots=True)
class _Candidate:
    article: Article
    score: float
    title: float  # share covered by its title and headings
    context: float  # share of the previous question's weight it covers
    is_previous: bool  # the previous reply was cut from it


class BuiltinResponder:
    name = "builtin"
    local = True  # answers from the passages it is given, nothing else

    async def answer(self, question: Question) -> Answer:
        found = articles(question.passages)
        reading = read(question, [a.vocab for a in found])
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


class _Query:
    """A message's terms and their weights, indexed by every stem that may stand for one.

    How much of the question a passage covers is asked a few hundred times a turn (every
    article, paragraph and sentence); with the index it is a set intersection with the
    passage's words and a loop over the few found, not a scan of every term's alternatives.
    Results are remembered per vocabulary for the turn: the same sets are asked about again.
    """

    __slots__ = (
        "_covered",
        "_credits",
        "by_stem",
        "found",
        "order",
        "stems",
        "terms",
        "total",
        "weights",
    )

    def __init__(self, terms: list[Term]) -> None:
        self.terms = terms
        self.weights: list[float] = []
        self.total = 1.0
        by_stem: dict[str, list[tuple[int, float]]] = {}
        for i, t in enumerate(terms):
            for s, credit in t.alternatives:
                if s in by_stem:
                    by_stem[s].append((i, credit))
                else:
                    by_stem[s] = [(i, credit)]
        self.by_stem = by_stem
        self.stems = frozenset(by_stem)
        # Every (stem, term, credit), by term and then best credit first: the first of a
        # term's stems found in a place gives the term's credit there. Ties stay in the
        # stems' order (n); plain tuples sort in C, a key function per entry costs more. A
        # stem at no credit stands for nothing, so it is left out here rather than skipped
        # in every article.
        ranked = sorted(
            (i, -credit, n, s, credit)
            for n, (s, i, credit) in enumerate(
                (s, i, credit) for s, entries in by_stem.items() for i, credit in entries
            )
            if credit > 0
        )
        self.order = [(s, i, credit) for i, _, _, s, credit in ranked]
        self.found: list[list[tuple[int, float, int]]] = []
        self._credits: dict[frozenset[str], dict[int, float]] = {}
        self._covered: dict[frozenset[str], float] = {}

    def weigh(self, weights: list[float]) -> None:
        self.weights = weights
        # A message must carry some weight of topic to be covered in full: "and is it good
        # for long?" is all small words, and matching them says nothing.
        self.total = max(1.0, sum(weights))
        self._covered.clear()

    def credits(self, vocab: frozenset[str]) -> dict[int, float]:
        """Each term found in ``vocab`` (by its index) with its best credit: ``Term.match``
        for the terms whose match is not 0."""
        found = self._credits.get(vocab)
        if found is None:
            found = self._credits[vocab] = self._best(self.stems & vocab)
        return found

    def _best(self, stems: Iterable[str]) -> dict[int, float]:
        found: dict[int, float] = {}
        for s in stems:
            for i, credit in self.by_stem[s]:
                if credit > found.get(i, 0.0):
                    found[i] = credit
        return found

    def locate(self, article: Article) -> list[tuple[int, float, int]]:
        """The terms the article has, in term order, each as (term, credit, places): the
        places (``Article.places`` bits) where that credit is the term's best. The weighing
        and every figure of ``evidence`` come from these, not from the article again."""
        found: list[tuple[int, float, int]] = []
        if self.stems.isdisjoint(article.words):
            return found
        places = article.places
        term, seen = -1, 0
        for s, i, credit in self.order:
            where = places.get(s)
            if where is None:
                continue
            if i != term:
                term, seen = i, 0
            where &= ~seen
            if where:
                seen |= where
                found.append((i, credit, where))
        return found

    def evidence(self, located: list[tuple[int, float, int]]) -> tuple[float, float, float, float]:
        """The weight of the terms (``locate``) an article has in its words, in its title and
        headings, in its bold labels, and the most any one of its blocks has.

        Every figure sums its terms' weights in the terms' order, as ``weight_of`` does, so
        it is the same to the last bit."""
        if not located:
            return 0.0, 0.0, 0.0, 0.0
        weights = self.weights
        if len(located) == 1:
            # A third of the articles have one of the words: each figure is then that word's
            # weight or nothing, 0.0 + value as sum() gives of one value.
            i, credit, where = located[0]
            value = 0.0 + weights[i] * credit
            return (
                value if where & IN_TEXT else 0.0,
                value if where & IN_TITLE else 0.0,
                value if where & IN_LABELS else 0.0,
                value if where >> FIRST_BLOCK else 0.0,
            )
        text: list[float] = []
        title: list[float] = []
        labels: list[float] = []
        # Keyed by the block's bit: only the bits that are set are visited, lowest first.
        blocks: dict[int, list[float]] = {}
        for i, credit, where in located:
            value = weights[i] * credit
            if where & IN_TEXT:
                text.append(value)
            if where & IN_TITLE:
                title.append(value)
            if where & IN_LABELS:
                labels.append(value)
            where >>= FIRST_BLOCK
            while where:
                bit = where & -where
                values = blocks.get(bit)
                if values is None:
                    blocks[bit] = [value]
                else:
                    values.append(value)
                where ^= bit
        return (
            sum(text, 0.0),
            sum(title, 0.0),
            sum(labels, 0.0),
            max([sum(values, 0.0) for values in blocks.values()], default=0.0),
        )

    def text_weight(self, located: list[tuple[int, float, int]]) -> float:
        """``covered`` of the article's vocab, from its ``locate``."""
        if not located:  # most articles, for the previous question's words
            return 0.0
        weights = self.weights
        return sum([weights[i] * credit for i, credit, where in located if where & IN_TEXT], 0.0)

    def stems_in(self, where: dict[str, tuple[int, ...]]) -> dict[int, tuple[str, ...]]:
        """The question's stems in many places at once (an article's units), from an index of
        the places each stem is in: place -> its stems, for the places with any. Places with
        the same words get equal tuples (the stems come in one order), so a caller can
        remember what it made of them; ``credits_of`` gives their credits."""
        places: dict[int, list[str]] = {}
        for s in self.stems:
            for place in where.get(s, ()):
                if place in places:
                    places[place].append(s)
                else:
                    places[place] = [s]
        return {place: tuple(stems) for place, stems in places.items()}

    def credits_of(self, stems: tuple[str, ...]) -> dict[int, float]:
        """``credits`` of a place that has these of the question's stems."""
        return self._best(stems)

    def weight_of(self, credits: dict[int, float]) -> float:
        """The weight the credited terms carry, summed in the terms' order (so the figure is
        the same to the last bit as a sum over every term, zeros included)."""
        if len(credits) < 2:  # most places have one of the words or none
            for i, credit in credits.items():
                return self.weights[i] * credit
            return 0.0
        weights = self.weights
        return sum([weights[i] * credit for i, credit in sorted(credits.items())], 0.0)

    def covered(self, vocab: frozenset[str]) -> float:
        covered = self._covered.get(vocab)
        if covered is None:
            covered = self._covered[vocab] = self.weight_of(self.credits(vocab))
        return covered


@dataclass(frozen=True, slots=True)
class _Weights:
    current: _Query
    previous: _Query


def _weights(reading: Reading, found: list[Article]) -> _Weights:
    """Rarity among the retrieved articles (bm25's idf), times the reading's emphasis."""
    n = len(found) + UNSEEN_ARTICLES

    def weigh(terms: list[Term], emphases: dict[str, float]) -> _Query:
        query = _Query(terms)
        query.found = [query.locate(article) for article in found]
        # In how many articles each term is found (a term is in the text at one credit).
        dfs = [0] * len(terms)
        for located in query.found:
            for i, _, where in located:
                if where & IN_TEXT:
                    dfs[i] += 1
        out: list[tuple[Term, float]] = []
        unknown: list[int] = []
        named: set[int] = set()
        names, answer_type = reading.names, reading.answer_type
        for t, df in zip(terms, dfs, strict=True):
            token = t.token
            weight = math.log(1 + (n - df + 0.5) / (df + 0.5))
            chatter, code = is_chatter(token), is_code(token)
            if df == 0 and not (chatter or code):
                unknown.append(len(out))
            if token in names:
                named.add(len(out))
            emphasis = emphases.get(token, 1.0)
            if chatter:
                weight = 0.15
            elif token in answer_type:
                # Half topic, half the kind of answer wanted (see _confidence).
                weight *= 0.5
            elif is_light_verb(token):
                weight *= 0.3
            elif code or is_number(token):
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
        query.weigh([w for _, w in out])
        return query

    return _Weights(
        weigh(reading.terms, reading.emphasis), weigh(reading.previous, reading.previous_emphasis)
    )


# --- choosing the article ---------------------------------------------------------------------


def _rank(reading: Reading, found: list[Article], weights: _Weights) -> list[_Candidate]:
    follow = reading.follow_up and not reading.correction
    current, previous = weights.current, weights.previous
    replied = reply_lines(reading.previous_reply) if reading.previous_reply else ()
    total, count = current.total, len(found)
    candidates = []
    for article, located, located_before in zip(found, current.found, previous.found, strict=True):
        # "together": the question's words in one paragraph or list, not scattered.
        coverage, title, labels, together = current.evidence(located)
        coverage /= total
        title /= total
        labels /= total
        together /= total
        context = previous.text_weight(located_before) / previous.total if previous.terms else 0.0
        is_previous = bool(replied) and contains_reply(article, replied)
        prior = R_PRIOR * (1 - article.rank / count)
        score = R_COV * coverage + R_TOG * together + R_TITLE * title + R_LABELS * labels + prior
        score += (0.6 if follow else 0.15) * context
        if is_previous and follow:
            # "Can I do *this* on Free?": if the previous article speaks to the new words at
            # all, it is the one meant.
            score += 0.4 + (1.5 * coverage if reading.points_back else 0.0)
        elif is_previous and not reading.correction:
            score += 0.1
        candidates.append(_Candidate(article, score, title, context, is_previous))
    candidates.sort(key=lambda c: c.score, reverse=True)
    return candidates


# --- cutting the reply ------------------------------------------------------------------------


def _shares(query: _Query, article: Article) -> list[float]:
    """How much of the question each unit covers (by index). Its paragraph's bold lead-in and
    the article's title count for less, since the unit is about them too ("Check on *it*"):
    term by term, as Term.match would give, max(own, 0.7 lead-in, 0.5 title)."""
    headline = {i: 0.5 * credit for i, credit in query.credits(article.title_vocab).items()}
    # Most units have none of the words themselves, and share what the title gives them.
    shares = [_share(query, headline)] * len(article.units)
    # A paragraph's bold lead-in gives all its units the same share, if they have no more.
    framed: dict[int, dict[int, float]] = {}
    for b in article.labelled:
        block = article.blocks[b]
        context = query.credits(block.label_vocab)
        if context:
            best = framed[b] = _at_least(headline, context, 0.7)
            share = _share(query, best)
            for unit in block.units:
                shares[unit.index] = share
    # Units with the same of the words in the same frame have the same share: many units say
    # the article's key word once, and it is worked out once.
    units = article.units
    known: dict[tuple[int, tuple[str, ...]], float] = {}
    for index, stems in query.stems_in(article.unit_words).items():
        b = units[index].block
        frame = b if b in framed else -1
        remembered = known.get((frame, stems))
        if remembered is None:
            own = query.credits_of(stems)
            remembered = known[frame, stems] = _share(
                query, _at_least(framed.get(b, headline), own)
            )
        shares[index] = remembered
    return shares


def _at_least(
    base: dict[int, float], credits: dict[int, float], factor: float = 1.0
) -> dict[int, float]:
    """``base`` with each term's credit raised to ``factor`` times its credit in ``credits``."""
    best = dict(base)
    for i, credit in credits.items():
        if (value := factor * credit) > best.get(i, 0.0):
            best[i] = value
    return best


def _share(query: _Query, best: dict[int, float]) -> float:
    weights = query.weights
    return sum([weights[i] * best[i] for i in sorted(best)], 0.0) / query.total


def _unit_scores(
    reading: Reading, article: Article, weights: _Weights, title_share: float
) -> dict[int, float]:
    current, previous = weights.current, weights.previous
    shares = _shares(current, article)
    previous_shares = _shares(previous, article) if previous.terms else None
    follow_share = 0.5 if reading.follow_up else 0.2
    wants, tried, previous_reply = reading.wants, reading.tried, reading.previous_reply
    opening = 0.1 + 0.3 * title_share
    count = max(1, len(article.units))
    total = current.total
    # What kind of answer is wanted, asked once rather than for every unit.
    number, duration, action = wants == "number", wants == "duration", wants == "action"
    scores: dict[int, float] = {}
    for unit in article.units:
        index = unit.index
        score = shares[index]
        # A line labelled with the question's words ("Password: at least 8 characters") is
        # the place the article says it.
        if unit.label_vocab:
            score += 0.15 * current.covered(unit.label_vocab) / total
        if previous_shares is not None:
            score += follow_share * previous_shares[index]
        if number and unit.has_number:
            score += 0.25
        if duration and unit.has_duration:
            score += 0.3
        if action and unit.has_action:
            score += 0.2 + (0.1 if unit.kind == "step" else 0.0)
        if tried:
            block = article.blocks[unit.block]
            if unit.vocab & tried:
                score -= 1.0
            elif not block.is_list and any(u.vocab & tried for u in block.units):
                # The rest of the paragraph about what was tried is done with too.
                score -= 0.5
            elif any(u.vocab & tried for u in block.units if u.index < index):
                # "I already tried X": the steps after X in the same list are what is left.
                score += 0.25
        if previous_reply and unit.text in previous_reply:
            if reading.correction:
                score -= 0.6
            elif reading.points_back:
                # "Can I get them back after that?" is about what was just said.
                score += 0.15
        # Articles open with the general case and end with exceptions and admin settings;
        # when the title already says what was asked, the opening is the answer.
        score += opening * (1 - index / count)
        scores[index] = score
    return scores


def _top(units: list[Unit], scores: dict[int, float]) -> Unit:
    """The best scoring of the units (in article order); of equal ones, the first."""
    best = units[0]
    for unit in units:
        if scores[unit.index] > scores[best.index]:
            best = unit
    return best


def _extract(reading: Reading, best: _Candidate, weights: _Weights) -> list[Unit]:
    """The best short passage, and a second one when another part of the article answers
    nearly as well ("how do I..." is often the steps plus the line about who may do it)."""
    article = best.article
    if not article.units:
        return []
    scores = _unit_scores(reading, article, weights, best.title)
    anchor = _top(article.units, scores)
    chosen = _window(article, anchor, scores, FIRST_PASSAGE_WORDS)
    words = sum(u.words for u in chosen)
    taken = {u.index for u in chosen}
    rest = [u for u in article.units if u.index not in taken and u.kind != "lead"]
    if rest:
        runner_up = _top(rest, scores)
        if scores[runner_up.index] >= SECOND_PASSAGE_SHARE * scores[anchor.index]:
            extra = _window(article, runner_up, scores, MAX_REPLY_WORDS - words, taken)
            if extra and words + sum(u.words for u in extra) <= MAX_REPLY_WORDS:
                chosen += extra
    # Each unit once, in article order (a unit is its index: units compare by every field).
    return sorted({u.index: u for u in chosen}.values(), key=lambda u: u.index)


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
    # A block's units are consecutive in the article.
    position = anchor.index - members[0].index
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


def _frames(reading: Reading, t: Term) -> bool:
    """A word that frames the question rather than says what it is about: small talk, a
    light verb, a quantity or a name of the user's own ("just *one* folder", "*Q1*"), or the
    story around the asking sentence (``Reading.framing``)."""
    return (
        is_chatter(t.token)
        or is_light_verb(t.token)
        or is_code(t.token)
        or is_number(t.token)
        or t.token in reading.framing
    )


def _shares_of_question(
    reading: Reading, query: _Query, vocabs: tuple[frozenset[str], ...], answers_number: bool
) -> list[float]:
    """How much of the question's weight each of ``vocabs`` covers. A word that frames the
    question counts when covered, and is not missing when not: "our IT guy is a freelancer"
    says who asks, and no article about sharing folders will mention freelancers."""
    covered = [0.0] * len(vocabs)
    totals = [0.0] * len(vocabs)
    # Each vocab's Term.match of every term, from the query's index: the terms not in it are
    # the ones at 0.
    matches = [query.credits(vocab) for vocab in vocabs]
    for i, (t, w) in enumerate(zip(query.terms, query.weights, strict=True)):
        # "minimum", "length", "discount": any number in the reply answers them.
        answered = answers_number and t.token in reading.answer_type
        frames: bool | None = None  # asked once, and only of a word some vocab lacks
        for k, found in enumerate(matches):
            match = 1.0 if answered else found.get(i, 0.0)
            if match == 0:
                if frames is None:
                    frames = _frames(reading, t)
                if frames:
                    continue
            covered[k] += w * match
            totals[k] += w
    # A message must carry some weight of topic to be covered in full (see _Query.weigh).
    return [c / max(1.0, total) for c, total in zip(covered, totals, strict=True)]


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
    replied = vocab | label_vocab | best.article.title_vocab
    answers_number = any(u.has_number or u.has_duration for u in units)
    coverage, reply_cover = _shares_of_question(
        reading, weights.current, (best.article.vocab, replied), answers_number
    )
    if reading.follow_up and weights.previous.terms:
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
