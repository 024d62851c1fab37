"""`explicit_request` (the user asks for a person, in any phrasing) and `keyword_detected` (a
phrase the bot's owner configured).

Both look at phrases, never at single words: "help", "support", "agent" or "human" alone
appear in ordinary questions ("do you support SAML?", "the Linux sync agent", "the Human
Resources templates"). A phrase counts only when it is not negated ("I don't need a human"),
not hypothetical ("if I ever wanted to talk to a person, ..."), not a question about the
people themselves ("do your agents work weekends?", "am I talking to a real person?"), and,
for configured keywords, not a how-to question the knowledge base answers ("how do I escalate
a ticket in the admin console?").
"""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import product
from string import ascii_lowercase

from nectar.handoffs.detection import text
from nectar.handoffs.detection.base import Reason, TriggerSettings, TurnFacts
from nectar.handoffs.detection.findings import Finding

# --- who: the people a user can ask for ------------------------------------------------------

_DET = r"(?:(?:a|an|the|some|any|your|one of your|one of the|a member of your|member of your)\s+)?"
_QUAL = r"(?:(?:real|actual|live|human|proper|genuine|flesh and blood|competent|senior)\s+)*"
_DEPT = r"(?:support|service|sales|billing|security|success|account|tech|technical|customer|it)"
_ROLE = (
    r"(?:team|teams|engineers?|agents?|staff|person|people|reps?|representatives?|specialists?|"
    r"folks|department|managers?|members?)"
)
_WHO = (
    r"(?P<who>"
    + _DET
    + _QUAL
    + r"(?:human beings?|humans?|persons?|people|agents?|representatives?|reps?|operators?|"
    r"staff(?: members?)?|employees?|engineers?|specialists?|technicians?|managers?|"
    r"supervisors?|consultants?|experts?|"
    + _DEPT
    + r"\s+"
    + _ROLE
    + r"|support|sales|billing|customer (?:service|support|care)|tech(?:nical)? support|"
    r"help ?desk|member of (?:your|the) (?:staff|team|support team)|"
    r"(?:someone|somebody|anyone|anybody)"
    r"(?: (?:real|human|from [a-z]+(?: [a-z]+)?|at hivebox|on your (?:side|team|staff)))?)"
    r")\b"
)
_LEADING_DET = re.compile("^" + _DET)
# Nobody in particular: fine after "talk to" ("can I talk to someone?"), too vague after "I
# need" ("we need someone to have view access").
_WEAK = re.compile(r"^(?:some|any)(?:one|body)$|^people$")
_QUALIFIED = re.compile(
    r"\b(?:real|actual|live|human|proper|genuine|flesh and blood)\s+(?:[a-z]+\s+)?"
    r"(?:person|persons|people|humans?|beings?|agents?|representatives?|reps?|operators?|"
    r"engineers?|staff|support|one|someone|specialists?)\b|"
    r"\b(?:some|any)(?:one|body) (?:real|human)\b|\bhuman (?:beings?|agents?|support|help)\b"
)
# A third party, not Hivebox's staff: "talk to people on my team", "chat with someone outside".
_THIRD_PARTY_AFTER = re.compile(
    r"^\s*(?:(?:on|in|from|at|within|of) (?:my|our|the same|his|her|their)|outside|else|"
    r"who works for (?:me|us))\b"
)
# A thing named after a person: "the agent role", "a human-readable link", "support tickets".
_NOT_A_PERSON_AFTER = re.compile(
    r"^\s*(?:view|role|roles|mode|app|tab|page|console|seat|seats|licen[cs]es?|permissions?|"
    r"account|accounts|plan|dashboard|panel|settings|status|readable|resources|tickets?|"
    r"hours|email|address|portal|articles?|docs|documentation|site)\b"
)
_PERSON = (
    r"(?:(?:a|an|the|some|any|your)\s+)?(?:(?:real|actual|live|human)\s+)*"
    r"(?P<who>human beings?|humans?|persons?|agents?|representatives?|reps?|operators?|"
    r"(?:some|any)(?:one|body)|staff|engineers?|specialists?)\b"
)

_TALK = r"(?:talk|speak|chat|talking|speaking|chatting|communicate|converse)"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        (
            "talk_to",
            _TALK + r"\s+(?:directly\s+|live\s+|now\s+|right now\s+)?(?:to|with)\s+" + _WHO,
        ),
        (
            "put_through",
            r"\b(?:connect|transfer|put|pass|hand|forward|route|escalate|send|redirect|switch|"
            r"refer|get)(?:\s+(?:me|us|this|it|my (?:chat|case|issue|ticket|question|request)|"
            r"the (?:chat|conversation|case)))?\s+(?:over\s+|through\s+|across\s+|back\s+|"
            r"in touch\s+)?(?:to|with)\s+" + _WHO,
        ),
        ("get_me", r"\b(?:get|give|bring|find|fetch|send)\s+(?:me|us)\s+" + _WHO),
        (
            "bring_someone",
            r"\b(?:get|bring|put|send|find)\s+(?:a|an|some|one of your)\s+" + _WHO + r"\s+"
            r"(?:on (?:this|the line|it)|in here|here|over|involved|to help)\b",
        ),
        (
            "contact_a_person",
            r"\b(?:contact|reach|call|phone|email|message)\s+" + _PERSON,
        ),
        (
            "is_available",
            r"\b(?:is|are)\s+(?:there\s+)?" + _PERSON + r"\s+(?:available|around|online|free)\b",
        ),
        (
            "call_me",
            r"\b(?:(?:have|get) (?:someone|somebody|a person|an agent|a human|a rep|your team)|"
            r"please|can you|could you|would you|pls)\s+(?:please\s+)?(?:call|phone|ring|"
            r"contact|email) (?:me|us)\b|\b(?:request|get|schedule|book|arrange|want|need|"
            r"like) a (?:call|callback|call back|phone call)\b",
        ),
        ("who_can_i", r"\bwho (?:can|could|should|do) (?:i|we) (?:talk|speak|chat) (?:to|with)\b"),
        (
            "wants",
            r"\b(?:want|wanna|need|would like|id like|wed like|prefer|rather|request|"
            r"requesting|demand|ask(?:ing)? for|looking for|(?:can|could|may) (?:i|we) "
            r"(?:have|get))\s+(?:to\s+)?(?:(?:talk|speak|chat)\s+(?:to|with)\s+)?" + _WHO,
        ),
        (
            "is_there",
            r"\bis (?:there|theres)\s+(?:a|an|any|some)?\s*" + _WHO + r"(?:\s+[a-z]+){0,4}?\s+"
            r"(?:i|we)\s+(?:can|could|may)\s+(?:talk|speak|chat|reach|call|contact)",
        ),
        (
            "someone_to",
            r"\b(?:i|we|id|wed)\s+(?:really\s+|urgently\s+)?(?:need|want|would like)\s+"
            r"(?P<who>someone|somebody|a person|a human|an expert|a specialist|an agent|people|"
            r"a real person)\s+(?:from\s+[a-z]+(?:\s+[a-z]+)?\s+)?(?:to|who can|that can)\s+"
            r"(?:help|look|check|go over|walk|call|fix|sort|handle|review|explain|stop|contact|"
            r"assist|take|talk|speak|chat|guide|investigate)\b",
        ),
        (
            "staff_please",
            r"\b(?:can|could|would|will|may)\s+(?P<who>(?:someone|somebody|anyone)\s+"
            r"(?:from|at|on|in)\s+(?:your|the|hivebox|support|security|billing|sales)"
            r"(?:\s+[a-z]+){0,2}|an? (?:real |actual |live )?(?:human|person|agent|"
            r"representative|rep|operator|engineer|specialist|technician)|your (?:support|"
            r"security|billing|sales|tech|technical) (?:team|staff|people|folks|engineers?))\s+"
            r"(?:please\s+|just\s+|quickly\s+)?(?:help|call|contact|look|check|review|get back|"
            r"reach out|go over|email|phone|assist|handle|take|walk|sort|fix|investigate)\b",
        ),
        (
            "bare",
            r"^(?:(?:please|pls|plz|hi|hey|hello|ugh|just|a|an|the|now|asap|ok|okay|yo|oi|"
            r"need|want|give me|get me|i said|i want|i need)\s+)*"
            r"(?P<who>humans?|persons?|agents?|operators?|representatives?|reps?|"
            r"(?:real|live|actual) (?:person|human|agent|people)|human (?:agent|being|support)|"
            r"someone real|customer (?:service|support)|live (?:chat|support)|support agent)"
            r"(?:\s+(?:please|pls|plz|now|asap|needed|required|here|again|already|thanks))*$",
        ),
        (
            "not_a_bot",
            r"\b(?:stop (?:the |this )?(?:bot|robot|ai|automated replies)|"
            r"(?:dont|do not) want (?:to (?:talk|speak|chat) (?:to|with) )?(?:a |the |an )?"
            r"(?:bot|robot|machine|ai)\b|no more (?:bots?|robots?)|enough (?:of )?(?:the |this )?"
            r"bot\b)",
        ),
    )
)
# Each phrase above contains one of its gate words: a set lookup skips the expressions that
# cannot match (most of them, for most messages).
_GATES = {
    name: frozenset(words.split())
    for name, words in (
        ("talk_to", "talk speak chat talking speaking chatting communicate converse"),
        (
            "put_through",
            "connect transfer put pass hand forward route escalate send redirect switch refer get",
        ),
        ("get_me", "me us"),
        ("bring_someone", "get bring put send find"),
        ("contact_a_person", "contact reach call phone email message"),
        ("is_available", "available around online free"),
        ("call_me", "call phone ring contact email callback"),
        ("who_can_i", "who"),
        (
            "wants",
            "want wanna need like prefer rather request requesting demand ask asking looking "
            "have get",
        ),
        ("is_there", "there theres"),
        ("someone_to", "need want like"),
        ("staff_please", "can could would will may"),
        (
            "bare",
            "human humans person persons agent agents operator operators representative "
            "representatives rep reps real live actual someone customer support",
        ),
        ("not_a_bot", "bot bots robot robots ai automated"),
    )
}
# Words that make a qualified person ("a real support engineer") a request in its clause.
_ASKING = re.compile(
    r"\b(?:please|pls|plz|want|wanna|need|like|rather|prefer|arrange|get|connect|talk|speak|"
    r"chat|let me|give me|can i|could i|can you|could you|now|asap|just|put me)\b|!"
)


def _typo_map() -> dict[str, str]:
    """One slip of the keyboard away from the words people type when they want a person
    ("humna", "agnet", "reprsentative"): a deletion, a swap or a wrong letter."""
    out: dict[str, str] = {}
    for word in ("human", "person", "agent", "operator", "representative", "people"):
        variants: set[str] = set()
        for i in range(len(word)):
            variants.add(word[:i] + word[i + 1 :])
            if i + 1 < len(word):
                variants.add(word[:i] + word[i + 1] + word[i] + word[i + 2 :])
        for i, letter in product(range(len(word)), ascii_lowercase):
            variants.add(word[:i] + letter + word[i + 1 :])
        for v in variants - {word}:
            out.setdefault(v, word)
    # Real words that happen to be one letter away.
    for real in ("gent", "anent", "agena", "humas", "pemple", "parson", "operate", "peoples"):
        out.pop(real, None)
    return out


_TYPOS = _typo_map()
_WORD = re.compile(r"[a-z]+")
# Every phrase above names a person, a team or the bot: a message without one of these words
# (most messages) is done with in one search.
_MENTIONS = frozenset(
    """
    human humans being beings person persons people agent agents representative representatives
    rep reps operator operators staff employee employees engineer engineers specialist
    specialists technician technicians manager managers supervisor supervisors consultant
    consultants expert experts support sales billing service member members someone somebody
    anyone anybody bot bots robot robots ai machine helpdesk desk team live chat talk speak
    call callback phone ring who
    """.split()
)


def _fix_typos(normal: str) -> str:
    if _TYPOS.keys().isdisjoint(_WORD.findall(normal)):
        return normal
    return _WORD.sub(lambda m: _TYPOS.get(m.group(0), m.group(0)), normal)


def _blocked(clause: str, start: int, normal: str) -> str | None:
    """Why a phrase found at `start` of `clause` is not a request, or None."""
    before = clause[:start]
    if text.negated(before):
        return "negated"
    if text.hypothetical(before, normal) or text.conditional_question(clause, start, normal):
        return "hypothetical"
    if text.identity_question(clause):
        return "asks_about_the_assistant"
    if text.about_people(clause):
        return "asks_about_the_people"
    return None


@lru_cache(maxsize=text.CACHE_SIZE)
def find_request(message: str) -> tuple[str, str] | None:
    """The rule and the phrase of `message` that asks for a person, or None."""
    normal = _fix_typos(text.normalise(message))
    words = text.word_set(normal)
    if _MENTIONS.isdisjoint(words):
        return None
    patterns = [(n, p) for n, p in _PATTERNS if not _GATES[n].isdisjoint(words)]
    for clause in text.clauses(normal):
        for name, pattern in patterns:
            for match in pattern.finditer(clause):
                who = match.groupdict().get("who") or ""
                after = clause[match.end("who") :] if who else ""
                if who and (_THIRD_PARTY_AFTER.match(after) or _NOT_A_PERSON_AFTER.match(after)):
                    continue
                head = _LEADING_DET.sub("", who, count=1)
                if name == "wants" and _WEAK.match(head):
                    continue
                if name != "bare" and head == "people" and not _QUALIFIED.search(who):
                    continue
                if _blocked(clause, match.start(), normal) is None:
                    return name, match.group(0)
        qualified = _QUALIFIED.search(clause)
        if (
            qualified
            and _ASKING.search(clause)
            and _blocked(clause, qualified.start(), normal) is None
        ):
            return "qualified_person", qualified.group(0)
    return None


def explicit_request(turn: TurnFacts, settings: TriggerSettings) -> Finding | None:
    found = find_request(turn.message)
    if found is None:
        return None
    rule, matched = found
    return Finding(Reason.explicit_request, {"rule": rule, "matched": matched})


# --- configured keywords ----------------------------------------------------------------------


@lru_cache(maxsize=512)
def _keyword_pattern(keywords: tuple[str, ...]) -> tuple[re.Pattern[str], dict[str, str]] | None:
    """One expression for all of a bot's keywords, and each normalised phrase's keyword."""
    phrases: dict[str, str] = {}
    for keyword in keywords:
        words = text.normalise(keyword).split()
        if words:
            phrases.setdefault(" ".join(words), keyword)
    if not phrases:
        return None
    # Longest first, so "human agent" wins over "human" when both are configured.
    bodies = sorted(
        (r"\s+".join(re.escape(w) for w in p.split()) for p in phrases), key=len, reverse=True
    )
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(bodies) + r")(?![a-z0-9])"), phrases


def keyword_detected(turn: TurnFacts, settings: TriggerSettings) -> Finding | None:
    compiled = _keyword_pattern(settings.keywords)
    if compiled is None:
        return None
    pattern, phrases = compiled
    normal = text.normalise(turn.message)
    if not pattern.search(normal):
        return None
    # A how-to question the knowledge base answered well is a question, whatever its words.
    answered = turn.answer is None or turn.answer.confidence >= settings.confidence_threshold
    if answered and text.is_how_to(normal):
        return None
    for clause in text.clauses(normal):
        for match in pattern.finditer(clause):
            if _blocked(clause, match.start(), normal) is None:
                found = " ".join(match.group(0).split())
                return Finding(
                    Reason.keyword_detected,
                    {"rule": "keyword", "keyword": phrases[found], "matched": match.group(0)},
                )
    return None
