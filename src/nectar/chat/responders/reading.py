"""What a chat message asks, as far as the builtin responder needs to know.

Which words carry the question (the sentence with the question mark more than the story
around it; not the "human" in "I don't need a human"), whether it leans on the previous turn
("can I undo it?"), whether it says the last answer missed ("I already tried that"), what
kind of answer it wants (a number, a place to click), whether it is small talk, and whether
it asks the assistant to *do* something to a particular account, which no article can.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat

from nectar.chat.responders.base import Question
from nectar.chat.responders.lexicon import (
    Term,
    content_tokens,
    is_chatter,
    is_code,
    is_light_verb,
    is_past,
    normalise,
    stem,
    term,
    tokens,
    with_typo_fixes,
    word_set,
)


class _Guarded:
    """A regex and the strings it cannot match without ("a|b": at least one of them). Most
    messages have none of them, and a few substring tests cost far less than the regex."""

    __slots__ = ("needs", "pattern")

    def __init__(self, needs: str, pattern: str) -> None:
        self.needs = tuple(needs.split("|"))
        self.pattern = re.compile(pattern)

    def _may_match(self, text: str) -> bool:
        # A plain loop: any() over a generator costs twice as much here.
        for needle in self.needs:  # noqa: SIM110
            if needle in text:
                return True
        return False

    def search(self, text: str) -> re.Match[str] | None:
        return self.pattern.search(text) if self._may_match(text) else None

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        return self.pattern.finditer(text) if self._may_match(text) else iter(())

    def sub(self, replacement: str, text: str) -> str:
        return self.pattern.sub(replacement, text) if self._may_match(text) else text


# A lead-in before a colon frames what follows ("Quick question from finance: how do I...?").
_CLAUSE = re.compile(r"(?<=[.!?:])\s+|\n+")
# Sentences break at whitespace after ".", "!" or "?" and at line breaks. This finds a spot
# in each break with only whitespace after it there; no lookbehind, so it is found fast.
_BREAK = re.compile(r"[.!?]\s|\n")
_CAPITALISED = re.compile(r"[A-Z][A-Za-z0-9]*")
_LETTER = re.compile(r"[A-Za-z]")

# --- small talk -------------------------------------------------------------------------------

_COURTESY = word_set(
    """
    thanks thank thx ty cheers appreciate appreciated great perfect awesome cool nice ok okay
    got it that thats this is was helps helped helpful help very much so lot you for the all
    good bye goodbye see ya later have day hi hello hey morning afternoon evening there a
    sounds works worked fine no worries figured out set i im we were just now wonderful
    excellent brilliant amazing super many again
    """
)
_GRATITUDE = word_set("thanks thank thx ty cheers appreciate appreciated")
SMALL_TALK = {
    "thanks": "You're welcome! Is there anything else I can help you with?",
    "greeting": "Hello! What can I help you with?",
    "ack": "Is there anything else I can help you with?",
}
_GREETING = word_set("hi hello hey morning afternoon evening")

# --- the conversation -------------------------------------------------------------------------

_ANAPHORA = word_set("it its that this those these they them there one ones")
_FOLLOW_OPENERS = re.compile(r"^(?:and|also|so|ok(?:ay)?|what about|how about|then|but)\b")
# The last answer missed. These words say so; they are not what the question is about.
_CORRECTION = _Guarded(
    "not|didnt|doesnt|i mean|thats|already|still|you keep",
    r"\b(?:(?:thats |that is |this is )?not what i (?:asked|meant|wanted|said)(?: for)?|"
    r"didnt ask|did not ask|i meant?\b|"
    r"thats (?:wrong|not (?:it|right|the problem|what))|not the (?:problem|issue|question)|"
    r"(?:didnt|doesnt|did not|does not) (?:help|work|fix)|not helpful|already|"
    r"still (?:doesnt|does not|not|nothing|no)|you keep)",
)
_TRIED = _Guarded("already|tried", r"\b(?:already|tried)\s+((?:\w+\s*){1,6})")
# "I don't need a human", "I didn't ask about upgrading": the words after are not the topic.
_NOT_THE_TOPIC = _Guarded(
    "no|dont|didnt|never|without",
    r"\b(?:(?:dont|do not|didnt|did not|no|not|never)\s+"
    r"(?:need|want|ask|asked|asking|mean|meant|care|talking)|without)\b((?:\s+\w+){0,6})",
)
_CLAUSE_END = re.compile(r"[,.;:!?]|\b(?:but|just|only|instead|rather)\b")
_QUESTION_START = re.compile(
    r"^(?:how|what|whats|where|when|which|who|why|can|could|do|does|did|is|are|will|would|"
    r"should|may|am)\b"
)

# --- what kind of answer ----------------------------------------------------------------------

# Something is not working: such a message is after the troubleshooting article.
_MALFUNCTION = _Guarded(
    "nt|not|never|unable|stopped|error|fail|broken|stuck|crash|frozen|freez",
    r"\b(?:wont|cant|cannot|doesnt|dont|isnt|arent|didnt|not|never|unable to|stopped)\s+"
    r"(?:\w+\s+)?(?:sync|work|load|open|upload|download|show|appear|connect|start|save|arrive|"
    r"update|run|install|finish)\w*|"
    r"\b(?:errors?|fail(?:s|ed|ing|ure)?|broken|stuck|crash\w*|frozen|freez\w*)\b",
)
PROBLEM = Term("problem", "problem", (("problem", 1.0), ("fix", 0.8), ("troubleshoot", 0.8)))
_HOW_MEASURE = _Guarded(
    "how", r"\bhow\s+(?:long|many|much|big|often|far|old|soon|fast|large|quickly|early|late)\b"
)
_WANTS_DURATION = _Guarded(
    "how|when",
    r"\b(?:how (?:long|soon|quickly)|"
    r"when (?:does|do|will|is|are)\b.*\b(?:expire|end|stop|run out))",
)
_WANTS_NUMBER = _Guarded(
    "how|what|price|cost|fee|discount|max|min|limit|biggest|largest|smallest|longest|shortest|"
    "number of|hours",
    r"\b(?:how (?:many|much|long|big|often|far|old|soon|fast|large)|what (?:version|size)|"
    r"price|cost|fee|discount|maximum|minimum|max|min|limit|biggest|largest|smallest|longest|"
    r"shortest|number of|hours)\b",
)
_WANTS_ACTION = _Guarded("how|where|step", r"\b(?:how|where|steps?)\b")
# In "what's the minimum password length" only "password" is the topic; "minimum" and
# "length" say a number is wanted, and any number in the right passage answers them ("at
# least 8 characters"), as "50% off" answers "discount" and "09:00 to 18:00" "hours".
_ANSWER_TYPE = word_set(
    "max maximum min minimum number length size amount count total price cost fee discount hours"
)

# --- things only a person can do --------------------------------------------------------------

# Asking the assistant (or staff) to act: "can you refund...", "please check", "I want that
# refunded". Asking it to tell or explain something is a question like any other.
_INFO_VERBS = word_set(
    "tell explain show describe clarify say let give list point recommend suggest remind help"
)
_ASK_TO_DO = _Guarded(
    "can|could|would|will|i need you to|i want|please",
    r"\b(?:can|could|would|will)\s+(?:you|someone|somebody|anyone|your team|support|staff)\s+"
    r"(?:please\s+|just\s+|kindly\s+)?(\w+)(?:\s+me\s+(\w+))?|"
    r"\b(?:i need you to|i want you to|please)\s+(\w+)|"
    r"\bi want (?:that|it|this|them|my money)\s+(\w+ed|back)\b",
)
# A concrete event of one account: a date, an amount, an order or invoice number, an address.
# One pattern of dozens of branches, tried at every position, is slow; split by what each part
# cannot match without (a date word, a digit, an "@"), most messages skip every part.
_WEEKDAY = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_SPECIFIC_DAY = re.compile(
    rf"\b(?:yesterday|last (?:week|month|night|year|{_WEEKDAY})|this morning|"
    rf"since (?:{_WEEKDAY}|yesterday|last)|on (?:{_WEEKDAY}))",
    re.IGNORECASE,
)
_SPECIFIC_NUMBER = re.compile(
    r"\b(?:(?:jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\s+\d{1,2}(?:st|nd|rd|th)?|"
    r"\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)|"
    r"\d{1,2}(?:st|nd|rd|th)\b)"
    r"|[$€£]\s?\d|\b\d+\s?(?:dollars|euros|usd|eur)\b|#\s?\d{3,}|\b[a-z]+-?\d{4,}\b",
    re.IGNORECASE,
)
_SPECIFIC_ADDRESS = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+", re.IGNORECASE)
_DIGIT = re.compile(r"\d")
# What every match of _SPECIFIC_DAY contains, in lower case.
_SPECIFIC_WORDS = ("yesterday", "last ", "this morning", "since ", "day")
_WHY_DID_MINE = _Guarded("why", r"\bwhy (?:was|were|did|has|have|is|are) (?:my|our|i|we)\b")


@dataclass(slots=True)
class Reading:
    terms: list[Term]  # the message's content words
    previous: list[Term]  # the previous user message's
    emphasis: dict[str, float] = field(default_factory=dict)  # token -> multiplier
    previous_emphasis: dict[str, float] = field(default_factory=dict)
    previous_reply: str = ""
    follow_up: bool = False
    # The follow-up points back ("can I do *this* on Free?", "and after a month?", "how many
    # can I request?"): its topic is the previous one.
    points_back: bool = False
    correction: bool = False  # "that's not what I asked", "didn't help"
    tried: frozenset[str] = frozenset()  # stems of what the user already tried
    wants: str | None = None  # "number", "duration", "action" or None
    answer_type: frozenset[str] = frozenset()  # words that only say what kind of answer
    small_talk: str | None = None  # "thanks", "greeting", "ack" or None
    # Capitalised inside a sentence, or in capitals: names ("Brazil", "HIPAA", "Salesforce").
    names: frozenset[str] = frozenset()
    # Below 1 when the message asks for an action on a particular account or event.
    request_factor: float = 1.0
    # Words that frame the question rather than say what it is about: a story around the
    # asking sentence that describes who asks ("Our bookkeeper works for an agency. Can she
    # download invoices?"), not one that tells what happened ("The owner passed away.").
    # They count when an answer covers them and are not missing when it does not.
    framing: frozenset[str] = frozenset()


class Known:
    """Whether a word stem occurs in any of the retrieved passages.

    A question has a few dozen words and the passages a thousand: looking the words up in
    each passage's vocabulary is cheaper than merging the vocabularies first.
    """

    __slots__ = ("_seen", "vocabs")

    def __init__(self, vocabs: Sequence[frozenset[str]]) -> None:
        self.vocabs = vocabs
        self._seen: dict[str, bool] = {}

    def __contains__(self, word: object) -> bool:
        if not isinstance(word, str):
            return False
        found = self._seen.get(word)
        if found is None:
            # map() keeps the loop in C: a generator costs more than the lookups themselves.
            found = self._seen[word] = any(map(frozenset.__contains__, self.vocabs, repeat(word)))
        return found


def read(question: Question, vocabs: Sequence[frozenset[str]]) -> Reading:
    """``vocabs``: the word stems of each retrieved article."""
    known = Known(vocabs)
    message = question.message.strip()
    text = normalise(message)
    history = question.history
    # The conversation's last question and answer, looking past pleasantries ("thanks!").
    previous_user = next(
        (
            h.content
            for h in reversed(history)
            if h.role == "user" and _small_talk(normalise(h.content)) is None
        ),
        "",
    )

    def terms_of(words: str) -> list[Term]:
        return [
            t if t.match(known) else with_typo_fixes(t, vocabs) for t in map(term, _topic(words))
        ]

    correction = bool(history) and bool(_CORRECTION.search(text))
    reading = Reading(
        terms=terms_of(_CORRECTION.sub(" ", text) if correction else text),
        previous=terms_of(previous_user),
        previous_reply=next(
            (
                h.content
                for h in reversed(history)
                if h.role == "bot" and h.content not in SMALL_TALK.values()
            ),
            "",
        ),
        correction=correction,
        small_talk=_small_talk(text),
        names=_names(message),
        request_factor=_request_factor(message, text),
    )
    # A complaint points at troubleshooting, but the words of the question come first.
    if _MALFUNCTION.search(text):
        reading.terms.append(PROBLEM)
    emphasis, reading.framing = _emphasis(message, known)
    reading.emphasis = {PROBLEM.token: 0.5, **emphasis}
    reading.previous_emphasis = _emphasis(previous_user, known)[0]
    # What was tried is the previous question's topic only if that question named it.
    reading.tried = _tried(text) - {t.stem for t in reading.previous}
    for t in reading.terms:
        if t.stem in reading.tried:
            reading.emphasis[t.token] = 0.2

    topical = [t for t in reading.terms if not is_chatter(t.token) and not is_light_verb(t.token)]
    pointing = not _ANAPHORA.isdisjoint(tokens(text)) or bool(_FOLLOW_OPENERS.match(text))
    if previous_user:
        # "and on Free?", "can I undo it?", "how many can I request?", or a correction that
        # names little ("no, I mean on Team") all lean on the previous question.
        reading.follow_up = (
            (pointing and len(topical) <= 3)
            or (correction and len(topical) <= 3)
            or len(topical) <= 2
        )
        reading.points_back = reading.follow_up and (pointing or len(topical) <= 1)

    if _WANTS_DURATION.search(text):
        reading.wants = "duration"
    elif _WANTS_NUMBER.search(text):
        reading.wants = "number"
    elif _WANTS_ACTION.search(text):
        reading.wants = "action"
    if reading.wants in ("number", "duration"):
        reading.answer_type = frozenset(t.token for t in reading.terms if t.token in _ANSWER_TYPE)
    return reading


@functools.lru_cache(maxsize=4096)
def _topic(words: str) -> tuple[str, ...]:
    """The content words of a message, once each. Cached: every turn reads the previous
    message again."""
    # "how long", "how many": the kind of answer wanted, not a topic.
    words = _HOW_MEASURE.sub("how", normalise(words))
    return tuple(dict.fromkeys(content_tokens(words)))


@functools.lru_cache(maxsize=4096)
def _small_talk(text: str) -> str | None:
    """What kind of small talk ("thanks", "greeting", "ack" for "ok" or "got it"), or None
    when there is something to look up."""
    words = tokens(text)
    if not words or "?" in text:
        return None
    negated = _negated_tokens(text)
    if any(w not in _COURTESY and w not in negated and not is_chatter(w) for w in words):
        return None
    if any(w in _GRATITUDE for w in words):
        return "thanks"
    if any(w in _GREETING for w in words):
        return "greeting"
    return "ack" if len(words) <= 4 else None


def _names(message: str) -> frozenset[str]:
    """Words in capitals, or capitalised but not the first word of a sentence. Only the
    capitalised words are visited: a word is the first of its sentence when no letter comes
    between the last sentence break before it and the word."""
    found: set[str] = set()
    start = 0  # no letter between here and the word's sentence start
    breaks = _BREAK.finditer(message)
    after = next(breaks, None)
    for match in _CAPITALISED.finditer(message):
        at = match.start()
        # A word starts at its first letter: "Com" is one in "3Com", not in "iPhone" or "a3Com".
        i = at
        while i and message[i - 1] in string.digits:
            i -= 1
        if i and message[i - 1] in string.ascii_letters:
            continue
        word = match.group()
        while after is not None and after.start() < at:
            start = after.end()
            after = next(breaks, None)
        if (word.isupper() and len(word) > 1) or (
            word != "I" and _LETTER.search(message, start, at)
        ):
            found.add(word.lower())
    return frozenset(found)


def _is_specific(message: str) -> bool:
    # Each part only where it can match. For other than ASCII text, case-insensitive matching
    # is more than lower() and "in".
    lower = message.lower()
    if (not message.isascii() or any(word in lower for word in _SPECIFIC_WORDS)) and (
        _SPECIFIC_DAY.search(message)
    ):
        return True
    if _DIGIT.search(message) and _SPECIFIC_NUMBER.search(message):
        return True
    return "@" in message and bool(_SPECIFIC_ADDRESS.search(message))


@functools.lru_cache(maxsize=4096)
def _negated_tokens(text: str) -> frozenset[str]:
    out: set[str] = set()
    for match in _NOT_THE_TOPIC.finditer(text):
        out.update(tokens(_CLAUSE_END.split(match.group(0))[0]))
    return frozenset(out)


def _emphasis(message: str, known: Known) -> tuple[dict[str, float], frozenset[str]]:
    """Words of the asking sentence count fully; the story around it and negated asides less.

    A story sentence mostly in words no article uses ("I run a small design studio") is the
    asker's background and its unknown words count for almost nothing; one about the product
    ("the owner of our workspace passed away") keeps them, since they say what is unusual.

    Also the words that frame the question rather than say what it is about (see
    ``Reading.framing``): a story sentence that describes ("our bookkeeper works for an
    agency") frames it; one that tells what happened, in the past tense ("the owner passed
    away", "my files were deleted"), is part of what is asked about, save for the unknown
    words of a background sentence.
    """
    emphasis: dict[str, float] = {}
    framing: set[str] = set()
    story = _story(message)
    if story is not None:
        sentences, asked = story
        for words, incident in sentences:
            topical = [t for t in words if not is_chatter(t) and not is_code(t)]
            unknown = [t for t in topical if term(t).match(known) == 0]
            background = len(unknown) * 2 > len(topical)
            for t in words:
                if t not in asked:
                    emphasis[t] = 0.05 if background and t in unknown else 0.35
                    if not incident or (background and t in unknown):
                        framing.add(t)
    for t in _negated_tokens(normalise(message)):
        emphasis[t] = 0.1
    return emphasis, frozenset(framing)


@functools.lru_cache(maxsize=4096)
def _story(
    message: str,
) -> tuple[tuple[tuple[tuple[str, ...], bool], ...], frozenset[str]] | None:
    """For a message that asks in some sentences and tells in others: every sentence's
    content words and whether it tells what happened, and the asking sentences' words.
    Otherwise None."""
    sentences = [s for s in _CLAUSE.split(message.strip()) if s.strip()]
    asking = [
        s for s in sentences if s.rstrip().endswith("?") or _QUESTION_START.match(normalise(s))
    ]
    if 0 < len(asking) < len(sentences) and sum(len(content_tokens(s)) for s in asking) >= 2:
        asked = frozenset(t for s in asking for t in content_tokens(s))
        return tuple(
            (tuple(content_tokens(s)), any(is_past(t) for t in tokens(s))) for s in sentences
        ), asked
    return None


def _tried(text: str) -> frozenset[str]:
    found: set[str] = set()
    for match in _TRIED.finditer(text):
        tail = _CLAUSE_END.split(match.group(1))[0]
        found.update(stem(t) for t in content_tokens(tail) if t not in ("tried", "already"))
    return frozenset(found)


def _request_factor(message: str, text: str) -> float:
    """A knowledge base explains how things work; it cannot refund, check or unlock one
    particular account. Such requests, above all about a concrete event (a date, an amount,
    an invoice number, an address), are worth less confidence however well the words match."""
    asks = False
    for match in _ASK_TO_DO.finditer(text):
        verbs = [v for v in match.groups() if v]
        if verbs and verbs[-1] not in _INFO_VERBS:
            asks = True
    specific = _is_specific(message)
    about_past = bool(_WHY_DID_MINE.search(text))
    factor = 1.0
    if asks:
        factor *= 0.75
    if specific:
        factor *= 0.8 if (asks or about_past) else 0.9
    if about_past:
        factor *= 0.8
    return factor
