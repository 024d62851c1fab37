"""What a notification says, in words: shared by the inbox entry and the email.

Plain text only; each channel escapes it for its own format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nectar.notifications.channels.base import Delivery, EventType

TITLE_LENGTH = 300  # the inbox's title column
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Wording:
    # One line, no urgency tag: "New handoff: Support".
    headline: str
    # The inbox title: the headline, with the urgency where it is the news.
    title: str
    body: str
    # (label, value) lines worth showing beside the body, in order.
    facts: list[tuple[str, str]]


def one_line(text: str, limit: int = TITLE_LENGTH) -> str:
    """Collapse whitespace (a bot name must not break a title or a mail header)."""
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _who(delivery: Delivery) -> tuple[str | None, str | None]:
    """(assignee, actor): the assignee from the handoff, whoever acted from the event data."""
    data = delivery.data
    assignee = (delivery.handoff.assignee_name if delivery.handoff else None) or data.get(
        "assignee_name"
    )
    actor = data.get("actor_name") or data.get("by")
    return (str(assignee) if assignee else None), (str(actor) if actor else None)


def describe(delivery: Delivery) -> Wording:
    view = delivery.handoff
    if view is None:
        message = delivery.data.get("message")
        body = str(message) if message else "If you can read this, Nectar can reach you here."
        return Wording(headline="Test notification", title="Test notification", body=body, facts=[])

    bot = view.bot_name or "a bot"
    summary = view.summary or "No summary."
    event = delivery.event
    body = summary
    if event is EventType.created:
        headline = f"New handoff: {bot}"
        title = f"New handoff ({view.urgency}): {bot}"
    elif event is EventType.assigned:
        assignee, actor = _who(delivery)
        if actor and assignee and actor != assignee:
            headline = f"Handoff assigned to {assignee} by {actor}: {bot}"
        else:
            headline = f"Handoff accepted by {assignee or actor or 'an agent'}: {bot}"
        title = headline
    elif event is EventType.resolved:
        headline = title = f"Handoff resolved: {bot}"
        if view.resolution_notes:
            body = f"Resolution notes: {view.resolution_notes}\n\n{summary}"
    elif event is EventType.escalated:
        headline = title = f"Handoff escalated to {view.urgency}: {bot}"
        previous = delivery.data.get("previous_urgency") or delivery.data.get("from_urgency")
        if previous:
            body = f"Urgency raised from {previous} to {view.urgency}.\n\n{summary}"
    elif event is EventType.cancelled:
        headline = title = f"Handoff cancelled: {bot}"
    else:
        headline = title = f"Handoff update: {bot}"

    facts = [
        ("Bot", view.bot_name),
        ("Urgency", f"{view.urgency} ({view.severity})" if view.severity else view.urgency),
        ("Reason", view.reason.replace("_", " ")),
        ("Status", view.status.replace("_", " ")),
    ]
    if view.user_name:
        facts.append(("User", view.user_name))
    if view.assignee_name:
        facts.append(("Assigned to", view.assignee_name))
    return Wording(
        headline=one_line(headline),
        title=one_line(title),
        body=body,
        facts=[(label, value) for label, value in facts if value],
    )
