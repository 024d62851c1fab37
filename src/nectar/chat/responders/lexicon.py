"""Words for the builtin responder: tokens, light stems, synonyms and how much a word says.

The responder compares a question with a few retrieved passages, so it needs a notion of
"the same word" that survives inflection ("syncing" / "synced"), everyday synonyms ("cost" /
"price", "laptop" / "computer"), chat spelling ("thru", "pls") and small typos ("pasword").
Everything here is general English or general support vocabulary; nothing knows about a
particular knowledge base.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Container, Iterable
from dataclasses import dataclass

from nectar.knowledge.search import STOPWORDS

_TOKEN = re.compile(r"[a-z0-9]+")


def word_set(text: str) -> frozenset[str]:
    """A set of words written as one string, so long lists stay readable."""
    return frozenset(text.split())


# Chat spelling, rewritten before anything else.
_SLANG = {
    "thru": "through",
    "tho": "though",
    "u": "you",
    "ur": "your",
    "r": "are",
    "pls": "please",
    "plz": "please",
    "wanna": "want",
    "gonna": "going",
    "cuz": "because",
    "coz": "because",
    "b4": "before",
    "abt": "about",
    "acct": "account",
    "pw": "password",
    "pwd": "password",
    "wat": "what",
    "whats": "what",
    "hows": "how",
    "info": "information",
    "mins": "minutes",
    "min": "minimum",
    "max": "maximum",
    "sec": "second",
    "gray": "grey",
    "center": "centre",
    "centers": "centres",
    "recognize": "recognise",
}

# Two-word phrases that mean one thing ("log in" is "sign in"). Each pattern comes with the
# strings it cannot match without one of: most messages have none, and skip the regex.
_PHRASES = (
    (("log",), re.compile(r"\blog(?:ged|ging)?\s+(in|into|on|out)\b"), r"sign \1"),
    (("log",), re.compile(r"\blog-?(in|on)s?\b"), r"sign \1"),
    (("sign",), re.compile(r"\bsign-?(in|on|up|out)s?\b"), r"sign \1"),
    (("e-mail",), re.compile(r"\be-mail"), "email"),
    (("x",), re.compile(r"\b(red|grey|green|blue)\s+x\b"), r"\1 cross"),
    (("wi",), re.compile(r"\bwi-?fi\b"), "wifi"),
    (("back",), re.compile(r"\bback(?:ed|ing)?\s+up\b"), "backup"),
    (
        ("back",),
        re.compile(r"\bget\s+(?:it|them|that|this|those|files?|folders?)?\s*back\b"),
        "restore",
    ),
    (("mind",), re.compile(r"\bchange\s+(?:my|our|your)\s+mind\b"), "undo"),
    # Asking to reach a person is asking about support.
    (
        ("talk", "speak", "chat", "touch"),
        re.compile(
            r"\b(?:talk|speak|chat|get in touch)\s+(?:to|with)\s+(?:a |an |some |your |the )?"
            r"(?:person|human|someone|somebody|agent|rep|representative|people|staff)\b"
        ),
        "contact support",
    ),
    (("much",), re.compile(r"\bhow\s+much\s+(?=(?:is|are|does|do|will|would|for|to)\b)"), "price "),
)

# Words the question may use for a word the passage uses; each maps to alternatives.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    # money
    "cost": ("price", "pricing", "per"),
    "price": ("cost", "per"),
    "pricing": ("price", "cost", "per"),
    "fee": ("price", "cost"),
    "cheap": ("price",),
    "expensive": ("price",),
    "pay": ("price", "billing", "payment"),
    # changing and undoing
    "update": ("change", "edit"),
    "change": ("update", "edit"),
    "edit": ("change", "update"),
    "undo": ("cancel", "restore", "revert", "reopen", "reverse"),
    "revert": ("restore", "undo"),
    "recover": ("restore", "recovery"),
    "retrieve": ("restore",),
    "undelete": ("restore",),
    "restore": ("recover", "back"),
    "erase": ("delete",),
    "wipe": ("delete",),
    "remove": ("delete",),
    "delete": ("remove",),
    "kick": ("remove",),
    "quit": ("leave",),
    "unsubscribe": ("cancel", "subscription"),
    "force": ("require", "enforce"),
    "mandatory": ("require", "enforce"),
    "compulsory": ("require", "enforce"),
    "obligatory": ("require",),
    # seeing and telling
    "read": ("open", "view"),
    "look": ("view", "see"),
    "ping": ("notify", "notification", "message"),
    "alert": ("notify", "notification"),
    "difference": ("compare", "versus"),
    "different": ("compare",),
    "vs": ("compare", "versus"),
    "versus": ("compare",),
    # devices and software
    "laptop": ("computer", "desktop"),
    "pc": ("computer", "desktop", "windows"),
    "computer": ("desktop",),
    "mac": ("macos", "computer"),
    "macbook": ("macos", "computer", "mac"),
    "iphone": ("ios", "phone", "mobile"),
    "ipad": ("ios", "tablet", "mobile"),
    "phone": ("mobile",),
    "cellular": ("mobile",),
    "cell": ("mobile",),
    "app": ("application",),
    "website": ("web", "site"),
    "site": ("web", "website"),
    "browser": ("web",),
    "os": ("operating", "system"),
    "distro": ("distribution",),
    "daemon": ("agent", "service"),
    # files
    "document": ("file", "doc"),
    "doc": ("document", "file"),
    "folder": ("directory",),
    "directory": ("folder",),
    "data": ("file",),
    "photo": ("camera", "picture"),
    "picture": ("photo", "camera"),
    "spreadsheet": ("csv", "xlsx"),
    "excel": ("csv", "xlsx", "spreadsheet"),
    "called": ("name",),
    "named": ("name",),
    "titled": ("name", "title"),
    # size and limits
    "big": ("large",),
    "large": ("big",),
    "huge": ("large",),
    "small": ("little",),
    "biggest": ("maximum", "limit"),
    "largest": ("maximum", "limit"),
    "limit": ("maximum",),
    "smallest": ("minimum", "least"),
    "shortest": ("minimum", "least"),
    "minimum": ("least",),
    "hit": ("reach", "exceed"),
    "exceed": ("reach", "over"),
    "used": ("usage",),
    # people
    "person": ("people", "user", "member"),
    "people": ("person", "user", "member"),
    "user": ("member", "person", "people"),
    "member": ("user", "people"),
    "employee": ("staff", "member", "user"),
    "staff": ("employee", "team"),
    "colleague": ("member",),
    "coworker": ("member",),
    "join": ("member", "invitation"),
    "invite": ("invitation",),
    "invitation": ("invite",),
    # accounts and security
    "signup": ("sign", "create"),
    "register": ("sign", "create"),
    "mfa": ("2fa", "factor"),
    "2fa": ("factor",),
    "authenticator": ("authentication",),
    "encrypt": ("encryption",),
    "secure": ("security",),
    # time
    "valid": ("expire", "expiry"),
    "expire": ("valid", "expiry"),
    "weekend": ("saturday", "sunday"),
    "hour": ("time",),
}

# Verbs that carry the grammar of a request more than its topic ("how do I *add* a password").
_LIGHT_VERBS = word_set(
    """
    add put make made set get gets getting do does go goes going use using used see find
    turn keep give gives take took run runs have has let show shows happen happens allow
    able come look put want need try work works help
    """
)
_EXTRA_STOPWORDS = word_set(
    """
    us also via etc theyre thats youre weve theyve youve isnt wont cant shouldnt wouldnt
    couldnt arent wasnt werent hasnt havent hadnt ill youll hes shes lets theres heres whos
    wheres whens already even ever either neither whether
    """
)

# Everyday words that a support question often carries and that say little about its topic
# when the knowledge base does not use them ("yesterday", "accidentally").
_CHATTER = word_set(
    """
    accidentally actually anymore anyway anything anyone anybody around away basically
    better bit cannot certain currently definitely else ever everyone everything exactly
    fine figure figured folks good great guy guys happen happened hello honestly idea kind
    know let like little lot lots maybe mean meant mind morning moment much need needs new
    nothing often okay possible pretty probably question quick quickly real really recently
    right said say says seem seems someone somebody something sometimes soon sort still
    stuff sure thing things think tell today tomorrow tonight tried try trying ugh want
    wanted wants way well wondering wonder work works working yesterday ago btw asap never
    somewhere anywhere nowhere everywhere
    """
)

# Irregular past tenses (regular ones end in "-ed").
_PAST = word_set(
    """
    was were had did got went came left lost took gave sent made paid bought sold ran told
    said saw found kept held built wrote forgot broke stole fell quit became began brought
    caught chose drove felt knew led met spent stood thought threw understood woke won hid
    """
)

_WORD_NUMBERS = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"}


# A turn normalises its message several times over (whole, by sentence, as tokens), and reads
# the conversation's earlier messages again. Messages are at most 4,000 characters.
@functools.lru_cache(maxsize=4096)
def normalise(text: str) -> str:
    """Lower case, apostrophes out, chat spelling and two-word phrases rewritten."""
    text = text.lower().replace("\u2019", "'").replace("'", "")
    text = " ".join(_SLANG.get(t, t) for t in text.split())
    for needs, pattern, replacement in _PHRASES:
        for word in needs:
            if word in text:
                text = pattern.sub(replacement, text)
                break
    return text


# Irregular forms a suffix stripper cannot reach.
_IRREGULAR = {
    "kept": "keep",
    "got": "get",
    "gotten": "get",
    "sent": "send",
    "made": "make",
    "paid": "pay",
    "lost": "lose",
    "left": "leave",
    "went": "go",
    "came": "come",
    "gone": "go",
    "took": "take",
    "taken": "take",
    "gave": "give",
    "given": "give",
    "bought": "buy",
    "ran": "run",
    "built": "build",
    "held": "hold",
    "found": "find",
    "told": "tell",
    "saw": "see",
    "seen": "see",
    "wrote": "write",
    "written": "write",
    "chose": "choose",
    "chosen": "choose",
    "older": "old",
    "oldest": "old",
    "newer": "new",
    "newest": "new",
    "bigger": "big",
    "larger": "large",
    "smaller": "small",
    "longer": "long",
    "shorter": "short",
    "earlier": "early",
    "later": "late",
}


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(normalise(text))


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A light suffix stripper: 'syncing'/'synced' -> 'sync', 'deletion'/'deleted' -> 'delet'."""
    if len(word) <= 3 or not word.isalpha():
        return word
    w = _IRREGULAR.get(word, word)
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "i"
    elif w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix in ("ing", "ed", "ion"):
        base = w[: -len(suffix)]
        if not w.endswith(suffix) or len(base) < 3 or not re.search(r"[aeiouy]", base):
            continue
        if suffix == "ion" and not base.endswith("t"):
            continue
        w = base
        break
    if len(w) > 3 and w.endswith("e") and w[:-1] not in STOPWORDS:
        w = w[:-1]
    elif len(w) > 3 and w.endswith("y") and w[-2] not in "aeiou":
        w = w[:-1] + "i"
    # "stopped"/"stop", "cancelled"/"cancel", "installed"/"install" end up alike.
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiou":
        w = w[:-1]
    return w


def content_tokens(text: str) -> list[str]:
    """Tokens a question is about: stopwords and single letters out."""
    return [
        t
        for t in tokens(text)
        if t not in STOPWORDS and t not in _EXTRA_STOPWORDS and (len(t) > 1 or t.isdigit())
    ]


def vocabulary(text: str) -> set[str]:
    """Every stem of a passage, stopwords included (a question word may be one)."""
    return {stem(t) for t in tokens(text)}


def is_light_verb(token: str) -> bool:
    return token in _LIGHT_VERBS


@functools.lru_cache(maxsize=16384)
def is_code(token: str) -> bool:
    """A name or number of the user's own ("Q1", "INV-20931", "400"), not a topic."""
    return any(c.isdigit() for c in token)


def is_chatter(token: str) -> bool:
    return token in _CHATTER or (token.endswith("ly") and len(token) > 5)


def is_past(token: str) -> bool:
    """A verb in the past tense: what is told in it happened ("left", "was deleted")."""
    return token in _PAST or (token.endswith("ed") and not token.endswith("eed") and len(token) > 4)


def is_number(token: str) -> bool:
    return token.isdigit() or token in _WORD_NUMBERS


@dataclass(frozen=True, slots=True)
class Term:
    """One content word of a question, with what may stand for it in a passage."""

    token: str
    stem: str
    # (stem, credit): the word itself at 1.0, synonyms and typo fixes for less.
    alternatives: tuple[tuple[str, float], ...]

    def match(self, vocab: Container[str]) -> float:
        best = 0.0
        for s, credit in self.alternatives:
            if credit > best and s in vocab:
                best = credit
        return best


# Terms are immutable and a handful of words make up most questions: build each once.
@functools.lru_cache(maxsize=16384)
def term(token: str) -> Term:
    own = stem(token)
    alternatives = [(own, 1.0)]
    for synonym in _SYNONYMS.get(token, ()) + _SYNONYMS.get(own, ()):
        s = stem(synonym)
        if all(s != a for a, _ in alternatives):
            alternatives.append((s, 0.8))
    return Term(token, own, tuple(alternatives))


def with_typo_fixes(t: Term, vocabs: Iterable[frozenset[str]]) -> Term:
    """A word found nowhere may be a typo of one that is: 'pasword', 'humna'. ``vocabs``: the
    passages' vocabularies, searched one by one (merging them costs more than the search)."""
    if len(t.stem) < 5 or t.stem.isdigit():
        return t
    fixes: set[str] = set()
    for vocab in vocabs:
        found = _lookalikes(vocab).fixes(t.stem)
        if found:  # seldom: most passages have no lookalike
            fixes.update(found)
    if not fixes:
        return t
    return Term(t.token, t.stem, t.alternatives + tuple((f, 0.8) for f in sorted(fixes)))


class _Lookalikes:
    """One passage's words by length and first letter, and the typo fixes found among them
    so far: the same few unknown words come back turn after turn."""

    MAX_REMEMBERED = 512

    __slots__ = ("_fixes", "_shapes")

    def __init__(self, vocab: frozenset[str]) -> None:
        self._shapes: dict[tuple[int, str], list[str]] = {}
        for v in vocab:
            self._shapes.setdefault((len(v), v[:1]), []).append(v)
        self._fixes: dict[str, tuple[str, ...]] = {}

    def fixes(self, word: str) -> tuple[str, ...]:
        found = self._fixes.get(word)
        if found is None:
            if len(self._fixes) >= self.MAX_REMEMBERED:
                self._fixes.clear()
            # One edit away means the same length give or take one, and starting with the
            # word's first letter, or its second when the first two swap or the first goes.
            found = self._fixes[word] = tuple(
                v
                for n in (len(word) - 1, len(word), len(word) + 1)
                for first in dict.fromkeys(word[:2])
                for v in self._shapes.get((n, first), ())
                if _one_edit(word, v)
            )
        return found


# The same passages come back turn after turn; a passage's vocabulary is one frozenset for as
# long as the passage is cached (see passages.py).
@functools.lru_cache(maxsize=1024)
def _lookalikes(vocab: frozenset[str]) -> _Lookalikes:
    return _Lookalikes(vocab)


def _one_edit(a: str, b: str) -> bool:
    """Damerau distance 1: one insertion, deletion, substitution or swap of neighbours."""
    if a == b or (a[0] != b[0] and a[1:2] != b[0:1]):
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        i = diff[0]
        return len(diff) == 2 and diff[1] == i + 1 and a[i] == b[i + 1] and a[i + 1] == b[i]
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))
