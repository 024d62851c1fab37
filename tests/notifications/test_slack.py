"""The Slack channel against a local stand-in for an incoming webhook that refuses what Slack
refuses (no text, invalid blocks, over-long headers) and answers 200 "ok" like Slack."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from nectar.config import SlackConfig
from nectar.notifications.channels.base import DeliveryFailed, EventType
from nectar.notifications.channels.slack import SlackChannel, mention
from nectar.notifications.netguard import NetGuard
from tests.notifications.platforms import (
    LOCAL,
    assert_failures_mapped,
    delivery,
    failure,
    http_client,
    view,
)
from tests.notifications.platforms import receiver as platform_receiver
from tests.receivers import Receiver, Recorded, Scripted

SECRET = "XXXXsecretTOKENxxxx"
HOOK_PATH = f"/services/T0000000/B0000000/{SECRET}"

_BLOCK_TYPES = {
    "section",
    "header",
    "context",
    "actions",
    "divider",
    "image",
    "input",
    "file",
    "rich_text",
    "video",
    "markdown",
}


def _text_object(obj: Any, limit: int, plain_only: bool = False) -> str | None:
    if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
        return f"bad text object {obj!r}"
    if plain_only and obj["type"] != "plain_text":
        return "must be plain_text"
    if obj["type"] == "plain_text" and "verbatim" in obj:
        return "verbatim on plain_text"
    if obj["type"] == "mrkdwn" and "emoji" in obj:
        return "emoji on mrkdwn"
    text = obj.get("text")
    if not isinstance(text, str) or not 1 <= len(text) <= limit:
        return f"text must be 1..{limit} characters: {text!r:.80}"
    return None


def _block_problem(block: Any) -> str | None:
    if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
        return f"unknown block {block!r}"
    kind = block["type"]
    if kind == "header":
        return _text_object(block.get("text"), 150, plain_only=True)
    if kind == "section":
        if "text" not in block and "fields" not in block:
            return "section needs text or fields"
        if "text" in block and (problem := _text_object(block["text"], 3000)):
            return problem
        fields = block.get("fields", [])
        if not isinstance(fields, list) or len(fields) > 10:
            return "at most 10 fields"
        for field in fields:
            if problem := _text_object(field, 2000):
                return problem
    if kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
            return "context needs 1..10 elements"
        for element in elements:
            if problem := _text_object(element, 3000):
                return problem
    if kind == "actions":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
            return "actions needs 1..25 elements"
        for element in elements:
            if element.get("type") != "button":
                return "only buttons expected"
            if problem := _text_object(element.get("text"), 75, plain_only=True):
                return problem
            url = element.get("url", "")
            if not url.startswith(("http://", "https://")) or len(url) > 3000:
                return "button url must be http(s), at most 3000 characters"
            if len(element.get("action_id", "")) > 255:
                return "action_id too long"
            if element.get("style", "primary") not in ("primary", "danger"):
                return "bad style"
    return None


def slack_check(request: Recorded) -> tuple[int, Any] | None:
    """What hooks.slack.com refuses."""
    if request.method != "POST" or request.path != HOOK_PATH:
        return 404, "no_service"
    if not request.headers.get("content-type", "").startswith("application/json"):
        return 400, "invalid_payload"
    try:
        body = request.json()
    except ValueError:
        return 400, "invalid_payload"
    if not isinstance(body, dict):
        return 400, "invalid_payload"
    text, blocks = body.get("text"), body.get("blocks")
    if not (isinstance(text, str) and text.strip()) and not blocks:
        return 400, "no_text"
    if blocks is not None:
        if not isinstance(blocks, list) or not 1 <= len(blocks) <= 50:
            return 400, "invalid_blocks (1..50 blocks)"
        ids = [b.get("block_id") for b in blocks if isinstance(b, dict) and "block_id" in b]
        if len(ids) != len(set(ids)):
            return 400, "invalid_blocks (duplicate block_id)"
        for block in blocks:
            if problem := _block_problem(block):
                return 400, f"invalid_blocks ({problem})"
    return None


@pytest.fixture
async def slack() -> Any:
    async with platform_receiver(slack_check, Scripted(200, "ok")) as receiver:
        yield receiver


def channel(url: str, guard: NetGuard, client: httpx.AsyncClient, **config: Any) -> SlackChannel:
    return SlackChannel(
        SlackConfig(webhook_url=SecretStr(url), **config), client=client, guard=guard
    )


async def send(receiver: Receiver, d: Any, **config: Any) -> tuple[Any, dict[str, Any]]:
    async with http_client() as client:
        result = await channel(receiver.url + HOOK_PATH, LOCAL, client, **config).send(d)
    assert receiver.refused == [], receiver.refused
    return result, receiver.requests[-1].json()


def header(message: dict[str, Any]) -> str:
    text: str = message["blocks"][0]["text"]["text"]
    assert message["blocks"][0]["type"] == "header"
    return text


def mrkdwn(message: dict[str, Any]) -> str:
    """Every mrkdwn text of the message, one per line."""
    texts: list[str] = []
    for block in message["blocks"]:
        if "text" in block and block["text"]["type"] == "mrkdwn":
            texts.append(block["text"]["text"])
        texts.extend(f["text"] for f in block.get("fields", []))
        texts.extend(e["text"] for e in block.get("elements", []) if e.get("type") == "mrkdwn")
    return "\n".join(texts)


def button(message: dict[str, Any]) -> dict[str, Any]:
    (actions,) = [b for b in message["blocks"] if b["type"] == "actions"]
    element: dict[str, Any] = actions["elements"][0]
    return element


async def test_new_handoff_is_a_block_kit_message_with_mentions(slack: Receiver) -> None:
    handoff = view()
    result, message = await send(
        slack,
        delivery(EventType.created, handoff, "slack"),
        mention_groups=["S0123ABCD", "@here", "oncall"],
        channel="#support",
    )
    assert result.status_code == 200
    assert slack.requests[-1].headers["content-type"] == "application/json"
    assert header(message) == ":rotating_light: New handoff from Support (high urgency)"
    fields = message["blocks"][1]["fields"]
    assert [f["text"].split("\n")[0] for f in fields] == [
        "*Urgency*",
        "*Reason*",
        "*Bot*",
        "*Status*",
        "*User*",
    ]
    assert [f["text"].split("\n")[1] for f in fields[:4]] == [
        "high (critical)",
        "explicit request",
        "Support",
        "pending",
    ]
    body = mrkdwn(message)
    assert "charged twice for order 1042" in body
    assert "> *user:* I want to talk to a human." in body
    assert button(message)["url"] == handoff.url
    assert button(message)["style"] == "primary"
    context = message["blocks"][-1]
    assert context["type"] == "context"
    assert f"<{handoff.url}|{handoff.id[:8]}>" in context["elements"][0]["text"]
    assert "<!date^1741083300^" in context["elements"][0]["text"]
    # The fallback text carries the mentions (it is what the notification shows).
    assert message["text"].startswith("<!subteam^S0123ABCD> <!here> @oncall New handoff")
    assert "charged twice" in message["text"]
    assert "<!subteam^S0123ABCD>" in body
    assert message["channel"] == "#support"
    assert message["unfurl_links"] is False


@pytest.mark.parametrize(
    ("event", "fields", "data", "expected", "said"),
    [
        (
            EventType.assigned,
            {"status": "assigned", "assignee_name": "Alice"},
            {"assignee_name": "Alice", "by": "Alice"},
            ":raising_hand: Handoff from Support accepted by Alice",
            "Alice is handling the conversation now.",
        ),
        (
            EventType.assigned,
            {"status": "assigned", "assignee_name": "Carol"},
            {"assignee_name": "Carol", "by": "Bob"},
            ":raising_hand: Handoff from Support assigned to Carol by Bob",
            "Carol is handling the conversation now.",
        ),
        (
            EventType.resolved,
            {"status": "resolved", "assignee_name": "Carol", "resolution_notes": "Refunded."},
            {"by": "Alice"},
            ":white_check_mark: Handoff from Support resolved by Alice",
            "*Resolution notes*\nRefunded.",
        ),
        (
            EventType.cancelled,
            {"status": "cancelled"},
            {"why": "user left"},
            ":heavy_multiplication_x: Handoff from Support cancelled",
            "Closed without a resolution (user left): no one needs to pick it up any more.",
        ),
        (
            EventType.escalated,
            {"urgency": "critical", "severity": "critical"},
            {"breach": "accept", "from_urgency": "medium", "to_urgency": "critical", "level": 1},
            ":rotating_light: Handoff from Support escalated to critical urgency"
            " (was medium): not accepted in time",
            "Nobody accepted it within its SLA target",
        ),
    ],
)
async def test_follow_ups_say_what_changed_and_who(
    slack: Receiver,
    event: EventType,
    fields: dict[str, Any],
    data: dict[str, Any],
    expected: str,
    said: str,
) -> None:
    handoff = replace(view(urgency="medium", severity="warning"), **fields)
    _, message = await send(
        slack, delivery(event, handoff, "slack", data), mention_groups=["S0123ABCD"]
    )
    assert header(message) == expected
    assert said in mrkdwn(message)
    assert button(message)["url"] == handoff.url
    # Only an escalation calls people again; the other follow-ups inform.
    calls = event is EventType.escalated
    assert ("<!subteam^S0123ABCD>" in message["text"]) is calls
    assert ("style" in button(message)) is calls
    assert ("Last messages" in mrkdwn(message)) is calls
    assert message["text"].startswith(expected.split(" ", 1)[1] if not calls else "<!subteam")


async def test_test_notification(slack: Receiver) -> None:
    d = delivery(EventType.test, None, "slack")
    result, message = await send(slack, d, mention_groups=["S0123ABCD"])
    assert result.status_code == 200
    assert header(message) == ":wave: Nectar test notification"
    assert message["text"].startswith("Nectar test notification: ")
    assert "S0123ABCD" not in json.dumps(message)  # a test pings nobody
    assert d.id in mrkdwn(message)


async def test_user_text_cannot_mention_or_link(slack: Receiver) -> None:
    handoff = view(
        summary="<!channel> urgent & <https://evil.example|click here> <@U0123ABCD>",
        bot_name="Bot <!here>",
        transcript=[{"role": "user", "content": "<!everyone> hi"}],
    )
    _, message = await send(slack, delivery(EventType.created, handoff, "slack"))
    # Slack reads mentions and links in mrkdwn and in the top-level text (plain_text, as in
    # the header, is shown as typed).
    parsed = message["text"] + "\n" + mrkdwn(message)
    for forged in ("<!channel>", "<!here>", "<!everyone>", "<https://evil", "<@U0123ABCD>"):
        assert forged not in parsed
    assert "&lt;!channel&gt; urgent &amp; &lt;https://evil.example|click here&gt;" in parsed
    assert "Bot &lt;!here&gt;" in parsed
    assert header(message) == ":rotating_light: New handoff from Bot <!here> (high urgency)"
    summary = next(b for b in message["blocks"] if "*Summary*" in b.get("text", {}).get("text", ""))
    assert summary["text"]["verbatim"] is True


async def test_event_details_are_shown_as_the_worker_scrubbed_them(slack: Receiver) -> None:
    """The worker scrubs the delivery before Slack's channel gets it (tests/notifications/
    test_tasks.py proves nothing personal reaches Slack): the placeholders arrive intact."""
    cancelled = view(status="cancelled", assignee_name="[email]")
    why = "user left, call back on [phone]"
    _, message = await send(slack, delivery(EventType.cancelled, cancelled, "slack", {"why": why}))
    resolved = replace(cancelled, status="resolved")
    await send(slack, delivery(EventType.resolved, resolved, "slack", {"by": "[email]"}))
    assert "(user left, call back on [phone])" in mrkdwn(message)
    assert header(slack.requests[-1].json()).endswith("resolved by [email]")


async def test_long_text_fits_slack_limits(slack: Receiver) -> None:
    handoff = view(bot_name="B" * 400, summary="& " * 5000, reason="x" * 3000)
    await send(slack, delivery(EventType.created, handoff, "slack"))
    message = slack.requests[-1].json()
    assert len(header(message)) == 150
    summary = next(b for b in message["blocks"] if "*Summary*" in b.get("text", {}).get("text", ""))
    assert len(summary["text"]["text"]) <= 3000
    assert summary["text"]["text"].endswith("&amp;…")  # no half entity at the cut


async def test_receiver_refuses_what_slack_refuses(slack: Receiver) -> None:
    """The stand-in is strict: an over-long header or an empty message is refused."""
    async with http_client() as client:
        r = await client.post(slack.url + HOOK_PATH, json={"blocks": []})
        assert (r.status_code, r.json()) == (400, "no_text")
        bad = {
            "text": "x",
            "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
        }
        r = await client.post(slack.url + HOOK_PATH, json=bad)
        assert r.status_code == 400 and r.json().startswith("invalid_blocks")


def test_mention_syntax() -> None:
    assert mention("S0123ABCD") == "<!subteam^S0123ABCD>"
    assert mention("@S0123ABCD") == "<!subteam^S0123ABCD>"
    assert mention("U0123ABCD") == "<@U0123ABCD>"
    assert mention("here") == "<!here>"
    assert mention("@channel") == "<!channel>"
    assert mention("<!subteam^S999|oncall>") == "<!subteam^S999|oncall>"
    assert mention("support-team") == "@support-team"
    assert mention("a<b") == "@a&lt;b"
    assert mention("  ") == ""


async def test_failures_are_mapped_and_the_webhook_url_stays_secret(
    slack: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    await assert_failures_mapped(
        lambda url, guard, client: channel(url, guard, client),
        slack,
        slack.url + HOOK_PATH,
        SECRET,
        delivery(EventType.created, view(), "slack"),
        caplog,
    )


async def test_slack_errors_are_permanent(slack: Receiver) -> None:
    async with http_client() as client:
        wrong = channel(slack.url + "/services/T0/B0/wrong", LOCAL, client)
        error = await failure(wrong.send(delivery(EventType.created, view(), "slack")))
        assert (error.retriable, error.status_code) == (False, 404)
        assert "no_service" in str(error) and "wrong" not in str(error)


async def test_not_configured_is_permanent() -> None:
    async with http_client() as client:
        slack = SlackChannel(SlackConfig(), client=client, guard=LOCAL)
        with pytest.raises(DeliveryFailed) as caught:
            await slack.send(delivery(EventType.created, view(), "slack"))
    assert not caught.value.retriable


async def test_a_handoff_event_without_a_handoff_is_permanent(slack: Receiver) -> None:
    async with http_client() as client:
        error = await failure(
            channel(slack.url + HOOK_PATH, LOCAL, client).send(
                delivery(EventType.created, None, "slack")
            )
        )
    assert not error.retriable
    assert slack.requests == []
