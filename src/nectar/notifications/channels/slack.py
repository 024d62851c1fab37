"""Slack: a Block Kit message through an incoming webhook.

A new or escalated handoff posts the full message (header; urgency, reason, bot and status
fields; the summary; the last messages; a button to the handoff; a context line) and mentions
the configured groups. Accepting, resolving and cancelling post a follow-up that says what
changed and who: an incoming webhook cannot edit or thread an earlier message, so each
follow-up is a new message that names the handoff again.

Slack answers 200 ``ok``; its errors are 4xx with a text body (``invalid_payload``,
``no_text``, ``channel_not_found``...), which ``post_json`` turns into permanent failures. The
webhook URL is the credential: it never appears in a message, an error or a log line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

import httpx

from nectar.config import SlackConfig
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

# Block Kit limits (https://api.slack.com/reference/block-kit/blocks).
HEADER_CHARS = 150
SECTION_CHARS = 3000
FIELD_CHARS = 2000
# Slack shows the top-level text in notifications only: keep it to a glance.
FALLBACK_SUMMARY_CHARS = 300

_SEVERITY_EMOJI = {
    "critical": ":rotating_light:",
    "error": ":red_circle:",
    "warning": ":warning:",
    "info": ":information_source:",
}
_EVENT_EMOJI = {
    EventType.assigned: ":raising_hand:",
    EventType.resolved: ":white_check_mark:",
    EventType.cancelled: ":heavy_multiplication_x:",
    EventType.test: ":wave:",
}
# Events that need someone to act: these carry the mentions and the last messages.
_CALLS = (EventType.created, EventType.escalated)
_BROADCASTS = ("here", "channel", "everyone")


def escape(text: str) -> str:
    """Slack's three control characters, so user text cannot forge a link or a mention."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escaped(text: str, limit: int) -> str:
    """``escape(text)`` in at most ``limit`` characters, never cutting an entity in half."""
    escaped = escape(text.strip())
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut.rstrip() + "…"


def _link(url: str, label: str) -> str:
    safe = url.replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
    return f"<{safe}|{escape(label)}>"


def mention(group: str) -> str:
    """A ``mention_groups`` entry as Slack mention syntax: user-group ids (``S…``) become
    ``<!subteam^S…>``, user ids ``<@U…>``, ``here``/``channel``/``everyone`` ``<!here>``...
    An entry already in ``<...>`` syntax is kept. Anything else is shown as ``@name`` (a
    webhook cannot resolve handles, so it will not ping)."""
    entry = group.strip()
    if entry.startswith("<") and entry.endswith(">"):
        return entry
    bare = entry.lstrip("@!")
    if bare.lower() in _BROADCASTS:
        return f"<!{bare.lower()}>"
    if re.fullmatch(r"S[A-Z0-9]{6,}", bare):
        return f"<!subteam^{bare}>"
    if re.fullmatch(r"[UW][A-Z0-9]{6,}", bare):
        return f"<@{bare}>"
    return f"@{escape(bare)}" if bare else ""


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _section(text: str, *, verbatim: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "mrkdwn", "text": text}
    if verbatim:  # user text: no automatic links or mentions
        body["verbatim"] = True
    return {"type": "section", "text": body}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _field(label: str, value: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": f"*{label}*\n{_escaped(value, FIELD_CHARS - 20)}"}


def _test_message(delivery: Delivery) -> tuple[str, list[dict[str, Any]]]:
    blocks = [
        {"type": "header", "text": _plain(f"{_EVENT_EMOJI[EventType.test]} {TEST_TITLE}")},
        _section(escape(TEST_TEXT)),
        _context(f"Sent by Nectar · delivery `{escape(delivery.id)}`"),
    ]
    return f"{TEST_TITLE}: {escape(TEST_TEXT)}", blocks


def _handoff_message(delivery: Delivery, mentions: str) -> tuple[str, list[dict[str, Any]]]:
    handoff = require_handoff(delivery)
    calls = delivery.event in _CALLS
    title = headline(delivery)
    emoji = _SEVERITY_EMOJI.get(handoff.severity, ":bell:") if calls else None
    emoji = emoji or _EVENT_EMOJI.get(delivery.event, ":bell:")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(clip(f"{emoji} {title}", HEADER_CHARS))}
    ]
    changed = change(delivery)
    if changed:
        blocks.append(_section(escape(changed)))
    if delivery.event is EventType.resolved and handoff.resolution_notes:
        notes = _escaped(handoff.resolution_notes, SECTION_CHARS - 40)
        blocks.append(_section(f"*Resolution notes*\n{notes}", verbatim=True))
    fields = [
        _field("Urgency", f"{handoff.urgency} ({handoff.severity})"),
        _field("Reason", humanize(handoff.reason)),
        _field("Bot", handoff.bot_name or "-"),
        _field("Status", humanize(handoff.status)),
    ]
    who = assignee(delivery)
    if who:
        fields.append(_field("Assignee", who))
    if handoff.user_name:
        fields.append(_field("User", handoff.user_name))
    blocks.append({"type": "section", "fields": fields})
    summary = _escaped(handoff.summary, SECTION_CHARS - 20) if handoff.summary.strip() else ""
    blocks.append(_section(f"*Summary*\n{summary or '_No summary_'}", verbatim=True))
    quoted = quoted_messages(handoff) if calls else []
    if quoted:
        lines = [f"> *{escape(who)}:* {escape(text.replace(chr(10), ' '))}" for who, text in quoted]
        text = clip("*Last messages*\n" + "\n".join(lines), SECTION_CHARS)
        blocks.append(_section(text, verbatim=True))
    if calls and mentions:
        blocks.append(_section(f"cc {mentions}"))
    if handoff.url:
        button: dict[str, Any] = {
            "type": "button",
            "text": _plain("Open handoff"),
            "url": handoff.url,
            "action_id": "nectar_open_handoff",
        }
        if calls:
            button["style"] = "primary"
        blocks.append({"type": "actions", "elements": [button]})
    blocks.append(_context(_context_line(delivery)))

    text = escape(title)
    if calls:
        summary_line = clip(handoff.summary, FALLBACK_SUMMARY_CHARS)
        text = " ".join(p for p in (mentions, text) if p)
        if summary_line:
            text += f": {escape(summary_line)}"
    elif changed:
        text += f". {escape(changed)}"
    if handoff.url:
        text += f" {_link(handoff.url, 'Open handoff')}"
    return text, blocks


def _context_line(delivery: Delivery) -> str:
    handoff = require_handoff(delivery)
    ref = f"`{escape(handoff.id[:8])}`"
    parts = ["Nectar", f"handoff {_link(handoff.url, handoff.id[:8]) if handoff.url else ref}"]
    when = opened_at(handoff)
    if when is not None:
        fallback = when.strftime("%Y-%m-%d %H:%M UTC")
        parts.append(
            f"opened <!date^{int(when.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"
        )
    return " · ".join(parts)


def build_message(
    delivery: Delivery, *, channel: str | None = None, mention_groups: Sequence[str] = ()
) -> dict[str, Any]:
    """The webhook's JSON body for this delivery."""
    if delivery.event is EventType.test:
        text, blocks = _test_message(delivery)
    else:
        mentions = " ".join(m for m in (mention(g) for g in mention_groups) if m)
        text, blocks = _handoff_message(delivery, mentions)
    # ``text`` is what notifications and screen readers show when there are blocks.
    payload: dict[str, Any] = {
        "text": text,
        "blocks": blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }
    if channel:  # honoured by legacy webhooks; app webhooks post to their own channel
        payload["channel"] = channel
    return payload


class SlackChannel(HttpChannel[SlackConfig]):
    name: ClassVar[str] = "slack"

    async def send(self, delivery: Delivery) -> SendResult:
        secret = self._config.webhook_url
        url = secret.get_secret_value() if secret is not None else ""
        if not url:
            raise DeliveryFailed("Slack webhook_url is not configured", retriable=False)
        payload = build_message(
            delivery, channel=self._config.channel, mention_groups=self._config.mention_groups
        )
        try:
            _, result = await post_json(self._client, self._guard, url, payload, "Slack")
        except httpx.InvalidURL:
            raise DeliveryFailed("Slack webhook_url is not a valid URL", retriable=False) from None
        return SendResult(status_code=result.status_code, detail="posted to Slack")
