"""How urgent a handoff is, from its reason and what the user wrote.

critical  a security compromise, an account taken over, data being lost right now, a legal
          threat;
high      someone blocked from working, a payment failure that locked the account or team,
          an angry threat to cancel;
medium    billing disputes, account-specific requests, sales and contract questions,
          complex changes, something that is broken;
low       a plain wish to talk to a person.

Each reason has a floor (a question the knowledge base cannot answer is about the user's own
account or money, so at least medium; a complex change is medium), and the words raise it.
For `error_pattern` and `bot_command` the urgency follows the conversation's topic, so the
user's recent messages are read too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from nectar.chat.responders.base import HistoryItem
from nectar.handoffs.detection import text
from nectar.handoffs.detection.base import URGENCY_ORDER, Reason, TurnFacts, Urgency


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    # Every match contains one of these words: a set lookup settles most messages before the
    # regular expression (ten times dearer) runs.
    gate: frozenset[str]
    pattern: re.Pattern[str]

    def matches(self, normal: str, words: frozenset[str]) -> bool:
        return not self.gate.isdisjoint(words) and bool(self.pattern.search(normal))


def _rules(*rules: tuple[str, str, str]) -> tuple[_Rule, ...]:
    return tuple(_Rule(name, frozenset(gate.split()), re.compile(p)) for name, gate, p in rules)


_CRITICAL = _rules(
    (
        "security_compromise",
        "hack hacked hacker hackers hacking compromised breach breached ransomware malware "
        "phishing phished takeover taken identity security stolen unauthorized unauthorised",
        r"\b(?:hack(?:ed|er|ers|ing)?|compromised|breach(?:ed)?|ransomware|malware|phish(?:ing|ed)|"
        r"account takeover|taken over|identity theft|security incident|stolen (?:password|"
        r"credentials|laptop|device|account)|unauthori[sz]ed (?:access|log ?ins?|sign ?ins?|"
        r"logins?|users?|device))\b",
    ),
    (
        "someone_else_in_the_account",
        "logged signed got broke hacked gained access accessed deleted wiped erased encrypted "
        "removed",
        r"\b(?:someone|somebody|a stranger|an unknown (?:person|user|device)|they)(?: else)? "
        r"(?:has |had |got |gained |just )?(?:logged|signed|got|broke|hacked|gained access)"
        r"(?: (?:in|into|on))? (?:to )?(?:my|our|the) (?:account|workspace|admin)|"
        r"\b(?:someone|somebody|a hacker|an attacker|they)(?: else)? (?:has |have )?accessed "
        r"(?:my|our|the)\b|"
        r"\b(?:someone|somebody|a hacker|an attacker|(?:an? )?(?:ex|former)[- ]?employee)\b.{0,30}"
        r"\b(?:deleted|wiped|erased|encrypted|removed) (?:all|everything|our|my|the|files)\b|"
        r"\b(?:former|ex)[- ]?(?:employee|staff|colleague|member|contractor|admin)s?\b.{0,40}"
        r"\b(?:still )?(?:has|have|had|with) access\b|\bstill has access\b",
    ),
    (
        "data_exposed",
        "leaked leaking exposed posted public downloading",
        r"\b(?:leaked|leaking|exposed|posted (?:publicly|online|on a public)|got posted|"
        r"public (?:forum|website|site)|downloading (?:all |our |client |company |customer )?"
        r"(?:data|files|records))\b",
    ),
    (
        "data_loss_in_progress",
        "deleting deleted wiping erasing encrypting encrypted destroying overwriting corrupting "
        "disappearing vanishing loss lost losing",
        r"\b(?:(?:are|is|were|keeps?|theyre|its|still|now) (?:deleting|wiping|erasing|encrypting|"
        r"destroying|overwriting|corrupting)|(?:deleting|wiping|encrypting) (?:files|everything|"
        r"all|our)\b.{0,30}\b(?:now|right now)|files (?:are|keep) (?:disappearing|vanishing|"
        r"being deleted)|encrypted files|data loss|loss of (?:our|my|all|the)|"
        r"(?:lost|losing) (?:all|everything|years of|the entire|our entire))",
    ),
    (
        "legal_threat",
        "lawyer lawyers attorney attorneys legal lawsuit sue suing court litigation formal "
        "solicitor solicitors regulator ombudsman gdpr protection",
        r"\b(?:lawyers?|attorneys?|legal action|lawsuit|sue|suing|court|litigation|formal notice|"
        r"legal notice|solicitors?|regulator|ombudsman|gdpr complaint|data protection authority)\b",
    ),
)
_HIGH = _rules(
    (
        "blocked_from_working",
        "cant cannot not unable nobody none no locked nothing stopped outage down",
        r"\b(?:(?:cant|cannot|can not|unable to|not able to)|(?:no one|nobody|none of)"
        r"(?: [a-z0-9]+){0,4} can(?:not)?) (?:log ?in|sign ?in|access|upload|download|work|"
        r"open (?:any|our|my|the|files)|get (?:in|into)|use)\b|"
        r"\blocked out\b|\bnothing works\b|\bstopped working for\b|\boutage\b|"
        r"\b(?:is|are) (?:all )?down\b",
    ),
    (
        "account_locked",
        "suspended locked read disabled frozen deactivated shut blocked",
        r"\b(?:account|workspace|team|organi[sz]ation|everyone|we)\b.{0,40}\b(?:suspended|locked|"
        r"read[- ]only|disabled|frozen|deactivated|shut down|blocked)\b|"
        r"\b(?:suspended|locked|read[- ]only|frozen|deactivated) (?:account|workspace)\b",
    ),
    (
        "urgent",
        "urgent urgently asap emergency deadline immediately right",
        r"\b(?:urgent|urgently|asap|emergency|deadline|immediately|right away)\b",
    ),
    (
        "threat_to_cancel",
        "cancel cancelling canceling leave switch switching move moving going take unacceptable "
        "ridiculous fed sick furious",
        r"\b(?:(?:ill|well|i will|we will|im going to|were going to|gonna|about to|or (?:we|i))"
        r" (?:cancel|leave|switch|move|take our business)|(?:switch|switching|move|moving|going)"
        r" to (?:dropbox|google drive|onedrive|box|a competitor|another provider)|"
        r"take (?:our|my) business elsewhere|cancel(?:ling)? (?:everything|our contract)"
        r"|unacceptable|ridiculous|fed up|sick of|furious)\b",
    ),
)
_MEDIUM = _rules(
    (
        "billing",
        "bill bills billed billing invoice invoices invoiced charge charges charged charging "
        "refund refunds refunded overcharge overcharged double payment payments paid paying card "
        "receipt receipts vat tax credit credited discount discounts subscription seats",
        r"\b(?:bill|bills|billed|billing|invoices?|invoiced|charges?|charged|charging|refunds?|"
        r"refunded|overcharged?|double[- ]charged|payments?|paid|paying|card|receipts?|vat|tax|"
        r"credit|credited|discounts?|subscription|seats)\b",
    ),
    (
        "sales_or_contract",
        "contract contracts sla renewal renew enterprise procurement baa hipaa dpa quote quotes "
        "sales negotiated negotiate negotiating negotiation negotiations purchase volume custom "
        "trial",
        r"\b(?:contracts?|sla|renewal|renew|enterprise|procurement|baa|hipaa|dpa|quotes?|sales|"
        r"negotiat\w*|purchase order|volume pricing|custom (?:plan|contract|pricing|terms)|"
        r"trial)\b",
    ),
    (
        "account_specific",
        "account accounts workspace subscription invoice admin you",
        r"\b(?:my|our|this|the) (?:account|accounts|workspace|subscription|invoice|admin)\b|"
        r"\b(?:can|could|would|will) you (?:please )?(?:check|restore|merge|transfer|extend|"
        r"unlock|reset|change|refund|remove|delete|add|give|move|look into|fix|recover|"
        r"cancel|correct|waive)\b(?! (?:me|us) (?:to|through|over)\b)",
    ),
    (
        "complex_change",
        "migrate migrates migrating migration migrations migrated merge merges merged merging "
        "merger consolidate consolidated consolidating consolidation",
        r"\b(?:migrat\w*|merg\w*|consolidat\w*)\b",
    ),
    (
        "something_broken",
        "not doesnt dont isnt arent wont broken error errors fail fails failing failed declined "
        "missing disappeared stuck crash crashes crashed crashing",
        r"\b(?:crash(?:es|ed|ing)?|not working|doesnt work|dont work|isnt working|"
        r"arent (?:showing|working|syncing)|"
        r"wont (?:sync|open|load|upload|work|download)|broken|error|errors|fail|fails|failing|"
        r"failed|declined|missing|disappeared|not showing|stuck)\b",
    ),
)
_LEVELS = ((Urgency.critical, _CRITICAL), (Urgency.high, _HIGH), (Urgency.medium, _MEDIUM))

FLOOR = {
    Reason.low_confidence: Urgency.medium,
    Reason.complex_query: Urgency.medium,
}
# Reasons whose urgency follows the conversation's topic, not only the last message.
_READS_HISTORY = frozenset({Reason.error_pattern, Reason.bot_command})
_TOPIC_TURNS = 3


@lru_cache(maxsize=text.CACHE_SIZE)
def _assess_one(message: str) -> tuple[Urgency, tuple[str, ...]]:
    normal = text.normalise(message)
    words = text.word_set(normal)
    for level, rules in _LEVELS:
        matched = tuple(rule.name for rule in rules if rule.matches(normal, words))
        if matched:
            return level, matched
    return Urgency.low, ()


def assess(texts: list[str]) -> tuple[Urgency, list[str]]:
    """The highest level the texts' words reach, and the rules that reached it."""
    best, rules = Urgency.low, []
    for message in texts:
        level, matched = _assess_one(message)
        rank = URGENCY_ORDER.index(level)
        if rank > URGENCY_ORDER.index(best):
            best, rules = level, list(matched)
        elif rank == URGENCY_ORDER.index(best):
            rules += [m for m in matched if m not in rules]
    return best, rules


def _recent_user_messages(history: list[HistoryItem]) -> list[str]:
    out: list[str] = []
    for item in reversed(history):
        if item.role in ("agent", "system"):
            break
        if item.role == "user":
            out.append(item.content)
            if len(out) == _TOPIC_TURNS:
                break
    return out[::-1]


def urgency_for(reason: Reason, turn: TurnFacts) -> tuple[Urgency, list[str]]:
    texts = [turn.message]
    if reason in _READS_HISTORY:
        texts = [*_recent_user_messages(turn.history), turn.message]
    level, rules = assess(texts)
    floor = FLOOR.get(reason, Urgency.low)
    if URGENCY_ORDER.index(floor) > URGENCY_ORDER.index(level):
        return floor, [f"{reason.value}_floor"]
    return level, rules


@lru_cache(maxsize=text.CACHE_SIZE)
def _critical(message: str) -> tuple[str, ...]:
    normal = text.normalise(message)
    words = text.word_set(normal)
    return tuple(rule.name for rule in _CRITICAL if rule.matches(normal, words))


def is_critical(message: str) -> list[str]:
    """The critical rules a message meets (empty when none)."""
    return list(_critical(message))
