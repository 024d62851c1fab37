"""`complex_query`: one message asks for a multi-step change across several systems.

"Upgrade us to Business, move us to the EU region, switch billing to invoices and provision
our 120 users through SCIM": each step may be documented, but the whole is a project that
needs staff. Counted are the distinct kinds of change asked for (relocate, merge, change plan,
switch something over, cancel, credit, provision, keep something intact through it all) and
the systems they touch (workspace, billing, region, sign-in, permissions, audit logs, ...).
Three kinds of change over two systems, or two over four, in one long enough message.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from nectar.handoffs.detection import text
from nectar.handoffs.detection.base import Reason, TriggerSettings, TurnFacts
from nectar.handoffs.detection.findings import Finding

MIN_WORDS = 20
MIN_CHANGES = 3
MIN_CHANGES_WITH_SYSTEMS = 2
MIN_SYSTEMS = 4

_CHANGES = {
    "relocate": r"\b(?:move|moved|moving|migrat\w*|relocat\w*|transfer(?:red|ring)? (?!to me)"
    r"(?:our|their|the|all|everything|it|them|\d+)|port (?:over|our|their))\b",
    "merge": r"\b(?:merg\w*|combin\w*|consolidat\w*|unif(?:y|ied|ying))\b",
    "restructure": r"\b(?:split\w*|separat(?:e|ed|ing) (?:our|their|the|it|them)|divid\w*|"
    r"spin (?:off|out)|carve out)\b",
    "change_plan": r"\b(?:upgrad\w*|downgrad\w*)\b",
    "switch_over": r"\b(?:switch\w*|convert\w*|chang(?:e|ed|ing) (?:from|over|our|their)|"
    r"replac\w*)\b",
    "cancel": r"\b(?:cancel\w*|terminat\w*|close (?:down |out )?(?:their|our|the))\b",
    "credit": r"\b(?:credit(?:ed)?|refund\w*|prorat\w*|reimburs\w*)\b",
    "provision": r"\b(?:provision\w*|onboard (?:our|their|\d+)|import (?:our|their|all|\d+))\b",
    "preserve": r"\b(?:intact|preserv\w*|retain\w*|carry (?:over|across)|without losing|"
    r"keep(?:ing)? (?:all|the|their|our|every)\b.{0,40}\b(?:intact|as (?:they|it) (?:are|is)|"
    r"the same))",
}
_SYSTEMS = {
    "workspace": r"\b(?:workspaces?|accounts?|tenants?|organi[sz]ations?)\b",
    "billing": r"\b(?:billing|billed|invoices?|card|payments?|credit)\b",
    "plan": r"\b(?:plan|plans|business|team|free|enterprise|seats?|licen[cs]es?)\b",
    "region": r"\b(?:regions?|eu|us|data cent(?:er|re)s?|residency)\b",
    "identity": r"\b(?:sso|scim|saml|okta|entra|azure ad|active directory|identity provider|"
    r"idp)\b",
    "users": r"\b(?:users|members|employees|people|staff)\b",
    "permissions": r"\b(?:permissions?|access rights|roles?|sharing|shared folders?)\b",
    "audit": r"\b(?:audit logs?|logs|history|version history|compliance)\b",
    "integrations": r"\b(?:slack|zoom|api|integrations?|webhooks?)\b",
    "domain": r"\b(?:domains?|email addresses)\b",
}
_CHANGE_PATTERNS = {name: re.compile(p) for name, p in _CHANGES.items()}
_SYSTEM_PATTERNS = {name: re.compile(p) for name, p in _SYSTEMS.items()}


def complex_query(turn: TurnFacts, settings: TriggerSettings) -> Finding | None:
    found = analyse(turn.message)
    if found is None:
        return None
    return Finding(Reason.complex_query, dict(found))


@lru_cache(maxsize=text.CACHE_SIZE)
def analyse(message: str) -> tuple[tuple[str, Any], ...] | None:
    """The changes and systems of a multi-step change request, or None."""
    normal = text.normalise(message)
    if normal.count(" ") + 1 < MIN_WORDS:
        return None
    words = len(text.tokens(normal))
    if words < MIN_WORDS:
        return None
    changes = sorted(name for name, p in _CHANGE_PATTERNS.items() if p.search(normal))
    if len(changes) < MIN_CHANGES_WITH_SYSTEMS:
        return None
    systems = sorted(name for name, p in _SYSTEM_PATTERNS.items() if p.search(normal))
    if len(changes) < MIN_CHANGES and len(systems) < MIN_SYSTEMS:
        return None
    if len(systems) < 2:  # many steps inside one system is a how-to, not a project
        return None
    return (
        ("rule", "multi_step_change"),
        ("changes", changes),
        ("systems", systems),
        ("words", words),
    )
