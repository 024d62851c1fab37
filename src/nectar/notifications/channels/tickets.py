"""What the ticketing platforms (Zendesk, ServiceNow) write on their records: the plain-text
description of a new handoff and the internal note of each follow-up.

Headlines come from ``wording`` so a ticket tells the same story as Slack, Teams and
PagerDuty. The worker scrubbed the delivery of PII before the channel got it.
"""

from __future__ import annotations

from nectar.notifications.channels.base import Delivery, EventType, HandoffView
from nectar.notifications.channels.wording import (
    TEST_TEXT,
    change,
    clip,
    headline,
    humanize,
)

# The transcript is quoted in full (the view holds the last few messages), each message
# clipped: a ticket is where an agent reads the context.
MESSAGE_CHARS = 1000


def subject(handoff: HandoffView, limit: int) -> str:
    """One line naming the bot, why the handoff opened and how urgent it is."""
    bot = handoff.bot_name or "a bot"
    return clip(f"Nectar handoff from {bot}: {humanize(handoff.reason)} ({handoff.urgency})", limit)


def description(handoff: HandoffView) -> str:
    """Summary, facts, the recent conversation and the link back to Nectar."""
    lines = [handoff.summary.strip() or "No summary.", ""]
    facts = [
        ("Bot", handoff.bot_name),
        ("Reason", humanize(handoff.reason)),
        ("Urgency", f"{handoff.urgency} ({handoff.severity})" if handoff.severity else ""),
        ("User", handoff.user_name or ""),
        ("Opened", handoff.created_at),
        ("Assigned to", handoff.assignee_name or ""),
    ]
    lines += [f"{label}: {value}" for label, value in facts if value]
    messages = [
        (str(m.get("role", "")) or "message", clip(str(m.get("content", "")), MESSAGE_CHARS))
        for m in handoff.transcript
    ]
    messages = [(who, text) for who, text in messages if text]
    if messages:
        lines += ["", "Recent conversation:"]
        lines += [f"{who}: {text}" for who, text in messages]
    lines += ["", f"Open the handoff in Nectar: {handoff.url}", f"Nectar handoff id: {handoff.id}"]
    return "\n".join(lines)


def note(delivery: Delivery, handoff: HandoffView) -> str:
    """The internal note of a follow-up: what happened, what it means, and the link."""
    lines = [headline(delivery) + "."]
    meaning = change(delivery)
    if meaning:
        lines.append(meaning)
    if delivery.event is EventType.resolved and handoff.resolution_notes:
        lines += ["", f"Resolution notes: {handoff.resolution_notes.strip()}"]
    lines += ["", f"Open the handoff in Nectar: {handoff.url}"]
    return "\n".join(lines)


def self_test_description(delivery: Delivery) -> str:
    message = delivery.data.get("message")
    text = message.strip() if isinstance(message, str) and message.strip() else TEST_TEXT
    return f"{text}\n\nNectar delivery id: {delivery.id}"
