"""Microsoft Teams: an Adaptive Card posted to a Workflows webhook.

The Workflows template "Post to a channel when a webhook request is received" expects a
``message`` whose attachment is an Adaptive Card; it answers 202 Accepted and posts the card
later. The card is version 1.4 (rendered by every Teams client, desktop and mobile): a title,
a FactSet (urgency, reason, bot, status), the summary, and an Action.OpenUrl to the handoff.
Text that comes from users (summary, notes, messages) goes into RichTextBlock text runs,
which Teams does not read as Markdown, so it cannot forge links.

The Workflows URL carries its signature (``sig=``) in the query: it is the credential and
never appears in an error or a log line. The flow decides the channel, so ``channel`` in the
config is informational only.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any, ClassVar

import httpx

from nectar.config import TeamsConfig
from nectar.notifications.channels.base import Delivery, DeliveryFailed, EventType, SendResult
from nectar.notifications.channels.http import HttpChannel, post_json
from nectar.notifications.channels.wording import (
    TEST_TEXT,
    TEST_TITLE,
    assignee,
    change,
    clip,
    headline,
    humanize,
    opened_at,
    quoted_messages,
    require_handoff,
)

CARD_VERSION = "1.4"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
SUMMARY_CHARS = 3000

_SEVERITY_COLOR = {"critical": "Attention", "error": "Attention", "warning": "Warning"}
_EVENT_COLOR = {EventType.resolved: "Good", EventType.assigned: "Accent"}
_CALLS = (EventType.created, EventType.escalated)


def _title(text: str, color: str = "Default") -> dict[str, Any]:
    return {
        "type": "TextBlock",
        "text": text,
        "size": "Large",
        "weight": "Bolder",
        "color": color,
        "wrap": True,
    }


def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def _runs(*runs: tuple[str, bool]) -> dict[str, Any]:
    """A RichTextBlock of (text, bold) runs: shown literally, never read as Markdown."""
    inlines: list[dict[str, Any]] = []
    for text, bold in runs:
        run: dict[str, Any] = {"type": "TextRun", "text": text}
        if bold:
            run["weight"] = "Bolder"
        inlines.append(run)
    return {"type": "RichTextBlock", "inlines": inlines}


def _card(body: list[dict[str, Any]], actions: list[dict[str, Any]]) -> dict[str, Any]:
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": body,
    }
    if actions:
        card["actions"] = actions
    return card


def _test_card(delivery: Delivery) -> dict[str, Any]:
    return _card(
        [
            _title(TEST_TITLE, "Accent"),
            _text(TEST_TEXT),
            _text(f"Sent by Nectar · delivery {delivery.id}", isSubtle=True, size="Small"),
        ],
        [],
    )


def _handoff_card(delivery: Delivery) -> dict[str, Any]:
    handoff = require_handoff(delivery)
    calls = delivery.event in _CALLS
    color = (
        _SEVERITY_COLOR.get(handoff.severity, "Accent")
        if calls
        else _EVENT_COLOR.get(delivery.event, "Default")
    )
    body: list[dict[str, Any]] = [_title(headline(delivery), color)]
    changed = change(delivery)
    if changed:
        body.append(_text(changed))
    if delivery.event is EventType.resolved and handoff.resolution_notes:
        body.append(
            _runs(
                ("Resolution notes: ", True), (clip(handoff.resolution_notes, SUMMARY_CHARS), False)
            )
        )
    facts = [
        ("Urgency", f"{handoff.urgency} ({handoff.severity})"),
        ("Reason", humanize(handoff.reason)),
        ("Bot", handoff.bot_name or "-"),
        ("Status", humanize(handoff.status)),
    ]
    who = assignee(delivery)
    if who:
        facts.append(("Assignee", who))
    if handoff.user_name:
        facts.append(("User", handoff.user_name))
    body.append(
        {
            "type": "FactSet",
            "facts": [{"title": title, "value": clip(value, 200)} for title, value in facts],
        }
    )
    body.append(
        _runs(("Summary: ", True), (clip(handoff.summary, SUMMARY_CHARS) or "no summary", False))
    )
    if calls:
        quoted = quoted_messages(handoff)
        if quoted:
            body.append(_text("Last messages", weight="Bolder", spacing="Medium"))
            body.extend(_runs((f"{who}: ", True), (text, False)) for who, text in quoted)
    body.append(_text(_context_line(delivery), isSubtle=True, size="Small", spacing="Medium"))
    actions = (
        [{"type": "Action.OpenUrl", "title": "Open handoff", "url": handoff.url}]
        if handoff.url
        else []
    )
    return _card(body, actions)


def _context_line(delivery: Delivery) -> str:
    handoff = require_handoff(delivery)
    line = f"Nectar · handoff {handoff.id}"
    when = opened_at(handoff)
    if when is not None:
        # Teams renders these functions in the reader's own time zone.
        stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        line += f" · opened {{{{DATE({stamp}, SHORT)}}}} {{{{TIME({stamp})}}}}"
    return line


def build_message(delivery: Delivery) -> dict[str, Any]:
    """The Workflows webhook's JSON body for this delivery."""
    card = _test_card(delivery) if delivery.event is EventType.test else _handoff_card(delivery)
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card}],
    }


class TeamsChannel(HttpChannel[TeamsConfig]):
    name: ClassVar[str] = "teams"

    async def send(self, delivery: Delivery) -> SendResult:
        secret = self._config.webhook_url
        url = secret.get_secret_value() if secret is not None else ""
        if not url:
            raise DeliveryFailed("Teams webhook_url is not configured", retriable=False)
        payload = build_message(delivery)
        try:
            _, result = await post_json(self._client, self._guard, url, payload, "Teams")
        except httpx.InvalidURL:
            raise DeliveryFailed("Teams webhook_url is not a valid URL", retriable=False) from None
        return SendResult(status_code=result.status_code, detail="accepted by the Teams workflow")
