"""What the chat and paging platforms (Slack, Teams, PagerDuty) say about a handoff event.

One headline per event says what changed and who did it, so the three platforms tell the
same story. Besides the ``HandoffView``, these keys of ``Delivery.data`` are read when present
(as the handoff service and the SLA checker write them):

* ``by``: who made the change (accepted, delegated, resolved);
* ``assignee_name``: the new assignee, when the view does not have it yet;
* ``why``: why a handoff was cancelled ("user left"...);
* ``from_urgency`` and ``breach`` (``accept`` or ``resolve``): an SLA escalation.

The worker scrubbed all of it (the handoff's text, the assignee's name and ``data``) of PII
before the channel got the delivery.
"""

from __future__ import annotations

from datetime import UTC, datetime

from nectar.notifications.channels.base import Delivery, DeliveryFailed, EventType, HandoffView

TEST_TITLE = "Nectar test notification"
TEST_TEXT = (
    "This is a test notification from Nectar. If you can read it, handoff notifications "
    "reach this channel. Nothing needs to be done."
)
# How many of the last conversation messages a new-handoff message quotes, and how long each.
QUOTED_MESSAGES = 3
QUOTE_CHARS = 280


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, an ellipsis marking a cut."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def humanize(value: str) -> str:
    """``low_confidence`` -> ``low confidence``."""
    return value.replace("_", " ").strip()


def require_handoff(delivery: Delivery) -> HandoffView:
    """The handoff of a non-test delivery; its absence is a caller's bug, not worth retrying."""
    if delivery.handoff is None:
        raise DeliveryFailed(
            f"{delivery.event.value} delivery {delivery.id} has no handoff", retriable=False
        )
    return delivery.handoff


def _text(delivery: Delivery, key: str, limit: int = 200) -> str | None:
    value = delivery.data.get(key)
    if not isinstance(value, str) or not value.strip():
        return None
    return clip(value, limit)


def actor(delivery: Delivery) -> str | None:
    return _text(delivery, "by")


def assignee(delivery: Delivery) -> str | None:
    handoff = delivery.handoff
    if handoff is not None and handoff.assignee_name:
        return clip(handoff.assignee_name, 200)
    return _text(delivery, "assignee_name")


def previous_urgency(delivery: Delivery) -> str | None:
    return _text(delivery, "from_urgency")


def breach(delivery: Delivery) -> str | None:
    """Which SLA target an automatic escalation missed: ``accept`` or ``resolve``."""
    return _text(delivery, "breach")


def why(delivery: Delivery) -> str | None:
    return _text(delivery, "why")


_MISSED = {"accept": "not accepted in time", "resolve": "not resolved in time"}
_MISSED_CHANGE = {
    "accept": "Nobody accepted it within its SLA target: it needs attention sooner.",
    "resolve": "It was not resolved within its SLA target: it needs attention sooner.",
}


def headline(delivery: Delivery) -> str:
    """One line: what happened, to which bot's handoff, and who did it."""
    if delivery.event is EventType.test:
        return TEST_TITLE
    handoff = require_handoff(delivery)
    subject = f"Handoff from {handoff.bot_name}" if handoff.bot_name else "Handoff"
    by = actor(delivery)
    match delivery.event:
        case EventType.created:
            return f"New handoff from {handoff.bot_name or 'a bot'} ({handoff.urgency} urgency)"
        case EventType.assigned:
            to = assignee(delivery)
            if to is None:
                return f"{subject} assigned" + (f" by {by}" if by else "")
            if by and by != to:
                return f"{subject} assigned to {to} by {by}"
            return f"{subject} accepted by {to}"
        case EventType.resolved:
            who = by or assignee(delivery)
            return f"{subject} resolved" + (f" by {who}" if who else "")
        case EventType.cancelled:
            return f"{subject} cancelled" + (f" by {by}" if by else "")
        case EventType.escalated:
            was = previous_urgency(delivery)
            line = f"{subject} escalated to {handoff.urgency} urgency"
            if was and was != handoff.urgency:
                line += f" (was {was})"
            missed = _MISSED.get(breach(delivery) or "")
            if missed:
                line += f": {missed}"
            return line + (f" by {by}" if by else "")
    return f"{subject}: {delivery.event.value}"


def change(delivery: Delivery) -> str | None:
    """For a follow-up, what it means for the people watching; None for a new handoff."""
    handoff = delivery.handoff
    if handoff is None:
        return None
    match delivery.event:
        case EventType.assigned:
            to = assignee(delivery)
            return f"{to} is handling the conversation now." if to else "Someone took it."
        case EventType.resolved:
            return "Nothing left to do: the conversation was handled."
        case EventType.cancelled:
            reason = why(delivery)
            closed = f"Closed without a resolution ({reason})" if reason else "Closed"
            return f"{closed}: no one needs to pick it up any more."
        case EventType.escalated:
            return _MISSED_CHANGE.get(
                breach(delivery) or "", "The urgency went up: it needs attention sooner."
            )
    return None


def quoted_messages(handoff: HandoffView) -> list[tuple[str, str]]:
    """The last few messages, oldest first, as (who, clipped text)."""
    quoted: list[tuple[str, str]] = []
    for message in handoff.transcript[-QUOTED_MESSAGES:]:
        content = clip(str(message.get("content", "")), QUOTE_CHARS)
        if content:
            quoted.append((str(message.get("role", "")) or "message", content))
    return quoted


def opened_at(handoff: HandoffView) -> datetime | None:
    """``created_at`` as an aware datetime (naive means UTC), or None when unparseable."""
    try:
        when = datetime.fromisoformat(handoff.created_at)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
