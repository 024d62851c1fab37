"""`bot_command`: the message starts with /human, /agent or /handoff."""

from __future__ import annotations

import re

from nectar.handoffs.detection.base import Reason, TriggerSettings, TurnFacts
from nectar.handoffs.detection.findings import Finding

COMMANDS = ("human", "agent", "handoff")
# "/agent need to talk about a discount" carries its topic after the command; "/humans" and
# "/agentless" are other words.
_COMMAND = re.compile(r"^\s*/(" + "|".join(COMMANDS) + r")(?![\w-])\s*(.*)$", re.I | re.S)


def command_of(message: str) -> tuple[str, str] | None:
    """The command and the text after it, or None."""
    match = _COMMAND.match(message)
    if match is None:
        return None
    return match.group(1).lower(), match.group(2).strip()


def bot_command(turn: TurnFacts, settings: TriggerSettings) -> Finding | None:
    found = command_of(turn.message)
    if found is None:
        return None
    command, rest = found
    return Finding(Reason.bot_command, {"rule": "command", "command": f"/{command}", "text": rest})
