"""Reading a chat message the way every trigger needs it.

Lower case, straight apostrophes dropped ("don't" is "dont", as in the responder's reading),
split into clauses (a negation or an "if" reaches to the end of its clause, not beyond), and
the few judgements several triggers share: is a phrase negated, is it hypothetical, is the
message a question that asks how something works, is it only a pleasantry.
"""

from __future__ import annotations

import re
from functools import lru_cache

_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u201c": '"', "\u201d": '"'})
_APOSTROPHE = re.compile(r"(?<=[a-z])'(?=[a-z])")
_SPACE = re.compile(r"\s+")
_CLAUSE = re.compile(r"[.!?;:,\n]+|\s[-\u2013\u2014]+\s|\b(?:but|because|although|though)\b")
TOKEN = re.compile(r"[a-z0-9]+")


# Messages come back as history on every later turn of their conversation: the readings of
# recent ones are kept, so a turn costs the analysis of its own message and little more.
CACHE_SIZE = 8192


@lru_cache(maxsize=CACHE_SIZE)
def normalise(text: str) -> str:
    """Lower case, "don't" -> "dont", single spaces. Punctuation stays (clauses need it)."""
    out = text.translate(_QUOTES).lower()
    out = _APOSTROPHE.sub("", out)
    return _SPACE.sub(" ", out).strip()


def clauses(normal: str) -> list[str]:
    """The clauses of a normalised message, in order, without empty ones."""
    return [c.strip() for c in _CLAUSE.split(normal) if c.strip()]


def tokens(normal: str) -> list[str]:
    return TOKEN.findall(normal)


@lru_cache(maxsize=CACHE_SIZE)
def word_set(normal: str) -> frozenset[str]:
    return frozenset(TOKEN.findall(normal))


# --- content words, for "is this the same question again" --------------------------------------

_STOPWORDS = frozenset(
    """
    a about above after again all also am an and any anything are as at be because been before
    being below between both but by can cant could did didnt do does doesnt doing dont down
    during each few for from further get got had has have having he her here hers him his how
    i id if im in into is isnt it its ive just know let like me more most my myself need no
    nor not now of off ok okay on once only or other our ours out over own please pls same she
    should so some such tell than thanks thank that thats the their them then there these they
    this those through to too under until up very want was wasnt we were what whats when where
    which while who whom why will with wont would yes yeah you your youre ur u hi hello hey
    hivebox really still again actually mean meant asked asking ask question answer said
    """.split()
)
_SYNONYM = {
    "put": "add",
    "set": "add",
    "protect": "password",
    "protected": "password",
    "shared": "share",
    "sharing": "share",
    "links": "link",
    "files": "file",
    "folders": "folder",
    "remove": "delete",
    "removing": "delete",
    "deleted": "delete",
    "update": "change",
    "modify": "change",
    "edit": "change",
    "alter": "change",
    "recover": "restore",
    "retrieve": "restore",
    "undelete": "restore",
    "login": "sign",
    "log": "sign",
    "price": "cost",
    "pricing": "cost",
    "costs": "cost",
}


def _stem(word: str) -> str:
    word = _SYNONYM.get(word, word)
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and not word.endswith("ss") and len(word) - len(suffix) >= 3:
            return _SYNONYM.get(word[: -len(suffix)], word[: -len(suffix)])
    return word


@lru_cache(maxsize=CACHE_SIZE)
def content_words(normal: str) -> frozenset[str]:
    """The words that carry a message's topic, lightly stemmed."""
    return frozenset(_stem(t) for t in tokens(normal) if t not in _STOPWORDS and len(t) > 1)


# --- negation, hypotheticals, questions about how things work ---------------------------------

# A negation right before the phrase, in the same clause: "I don't need a human", "I'm not
# asking for an agent", "no need to talk to a person". "Can't you ..." asks, it does not deny.
_NEGATED_BEFORE = re.compile(
    r"(?:\b(?:dont|do not|doesnt|does not|didnt|did not|not|never|no need|wont|will not|nor|"
    r"without|no longer|hardly)\b)"
    r"(?:\s+(?:really|even|actually|necessarily|yet|currently|think|i|we|need|needed|want|"
    r"wanted|to|have|a|an|the|any|ask(?:ing)?|for|looking|be|mean|meant|asked|talk|speak|"
    r"chat|talking|speaking|chatting|with|like|wish|would|id|im|am|just|wanna|ever))*"
    r"\s*$"
)
_HYPOTHETICAL_BEFORE = re.compile(
    r"\b(?:if|in case|suppose|supposing|what if|hypothetically|whenever|assuming|"
    r"say i|say we|one day|someday|in the future|eventually|what happens (?:when|if))\b"
)
# "Can I talk to a person if the bot can't answer?": a question about a possibility. Not "if
# that's OK", "if possible".
_IF_AFTER = re.compile(
    r"\bif\b(?! (?:possible|thats|that is|its|it is|you can|you could|at all|needed|"
    r"necessary|you dont mind|you do not mind))"
)
# Words that, anywhere in the message, say "I'm only asking": "Not now, just curious".
_ONLY_CURIOUS = re.compile(
    r"\b(?:just curious|just wondering|out of curiosity|not now|not right now|"
    r"for future reference|for the future|for later|no rush to talk|not yet)\b"
)
# The people are the subject of a question about them, not someone to be put through to.
_ABOUT_PEOPLE = re.compile(
    r"\b(?:hours?|weekends?|saturdays?|sundays?|holidays?|open|opening|time ?zones?|"
    r"languages?|english|german|french|spanish|business days|response times?|"
    r"how (?:long|fast|quickly)|what time|when|reply within|respond within|24 ?7|"
    r"round the clock|overnight|nights?|evenings?|mornings?)\b"
)
_IDENTITY = re.compile(
    r"\b(?:am i (?:talking|chatting|speaking|writing)|are you (?:a |an )?(?:real|human|bot|robot|"
    r"person|ai|machine)|is this (?:a |an )?(?:real|human|bot|robot|person|ai|machine)|"
    r"are (?:you|these|the answers) (?:written|generated))\b"
)
QUESTION_START = re.compile(
    r"^(?:how|where|what|whats|which|when|why|who|whose|is there|are there|is it|is that|"
    r"can i|can we|can you tell|could i|could we|do i|do we|do you|do your|does|did|should|"
    r"will|would it|am i|are|is)\b"
)
_HOW_TO = re.compile(
    r"\b(?:how (?:do|does|can|could|should|would|to|did)|where (?:do|can|is|are|does)|"
    r"what (?:is|are|does|do|happens)|which|is there a way|is it possible|can i|can we|"
    r"do i|do we)\b"
)


def negated(before: str) -> bool:
    """Whether the text right before a phrase (same clause) denies it."""
    return bool(_NEGATED_BEFORE.search(before[-80:]))


def hypothetical(clause_before: str, normal: str) -> bool:
    """An "if I ever ..." before the phrase in its clause, or "just curious" in the message."""
    return bool(_HYPOTHETICAL_BEFORE.search(clause_before)) or bool(_ONLY_CURIOUS.search(normal))


def conditional_question(clause: str, start: int, normal: str) -> bool:
    """A question whose phrase at `start` is followed by an "if" (see _IF_AFTER)."""
    if not _IF_AFTER.search(clause, start):
        return False
    end = normal.find(clause)
    asks = end >= 0 and normal[end + len(clause) : end + len(clause) + 1] == "?"
    return asks or bool(QUESTION_START.match(clause))


def about_people(clause: str) -> bool:
    """A question about the humans (their hours, weekends, languages), not a request for one."""
    is_question = clause.endswith("?") or bool(QUESTION_START.match(clause))
    return is_question and bool(_ABOUT_PEOPLE.search(clause))


def identity_question(clause: str) -> bool:
    """ "Am I talking to a real person?", "are you a bot?": curiosity about the assistant."""
    return bool(_IDENTITY.search(clause))


def is_how_to(normal: str) -> bool:
    """A question about how the product works ("how do I escalate a ticket ...?")."""
    return bool(QUESTION_START.match(normal)) or bool(_HOW_TO.search(normal))


# --- pleasantries -----------------------------------------------------------------------------

_COURTESY = frozenset(
    """
    thanks thank thx ty tyvm cheers appreciate appreciated great perfect awesome cool nice ok okay
    k kk got it that thats this is was helps helped helpful help very much so lot you for the all
    good bye goodbye see ya later have a day hi hello hey morning afternoon evening there
    sounds works worked working fine no worries figured out set i im ive we were just now
    wonderful excellent brilliant amazing super many again sorted solved fixed resolved did
    trick nevermind never mind np alright right yes yep yeah sure makes sense clear understood
    will try do exactly what needed wanted found thing things problem issue all everything
    your you're youre its it's now then already myself ourselves own anyway bot buddy mate
    """.split()
)
# "no need for an agent", "I don't need a human anymore": a closing, not a request.
_DECLINED = re.compile(
    r"\b(?:no need|(?:dont|do not|no longer) need|dont want)\s+"
    r"(?:for\s+|to\s+\w+\s+(?:to|with)\s+)?(?:a |an |the |any )?"
    r"(?:human|person|agent|one|someone|help|support|representative|operator|escalation)s?\b"
    r"(?:\s+(?:anymore|any more|now|after all))?"
)


# At least one of these makes a string of courtesy words a pleasantry ("what is it" is not).
_COURTESY_MARKERS = frozenset(
    """
    thanks thank thx ty tyvm cheers appreciate appreciated great perfect awesome cool nice ok
    okay k kk got bye goodbye hi hello hey morning afternoon evening sorted solved fixed
    resolved figured nevermind np alright yep sure understood wonderful excellent brilliant
    amazing super worked works helps helped helpful no nothing exactly
    """.split()
)


@lru_cache(maxsize=CACHE_SIZE)
def pleasantry(normal: str) -> bool:
    """Thanks, greetings, "got it", "no need for an agent, I figured it out": nothing to answer."""
    declined = _DECLINED.search(normal) is not None
    text = _DECLINED.sub(" ", normal)
    words = tokens(text)
    if "?" in text or len(words) > 16 or not (words or declined):
        return False
    return all(w in _COURTESY for w in words) and (
        declined or not _COURTESY_MARKERS.isdisjoint(words)
    )
