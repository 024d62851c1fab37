"""The Teams channel against a local stand-in for a Workflows webhook that refuses what the
"Post to a channel when a webhook request is received" flow cannot post (not a message, not
an Adaptive Card, a card Teams cannot render) and answers 202 Accepted like Workflows."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from nectar.config import TeamsConfig
from nectar.notifications.channels.base import DeliveryFailed, EventType
from nectar.notifications.channels.teams import TeamsChannel
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

SECRET = "sIgSeCrEt0123456789abcdefABCDEF"
FLOW_PATH = "/workflows/4f0c/triggers/manual/paths/invoke"
FLOW_QUERY = f"api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SECRET}"

_ELEMENTS = {
    "TextBlock",
    "RichTextBlock",
    "FactSet",
    "Image",
    "ImageSet",
    "Container",
    "ColumnSet",
    "ActionSet",
    "Table",
}
_ACTIONS = {
    "Action.OpenUrl",
    "Action.Submit",
    "Action.ShowCard",
    "Action.ToggleVisibility",
    "Action.Execute",
}
# Teams renders Adaptive Cards up to 1.5; we promise 1.4 or later.
_VERSIONS = {"1.4", "1.5"}


def _element_problem(element: Any) -> str | None:
    if not isinstance(element, dict) or element.get("type") not in _ELEMENTS:
        return f"unknown element {element!r:.80}"
    kind = element["type"]
    if kind == "TextBlock" and not (isinstance(element.get("text"), str) and element["text"]):
        return "TextBlock needs text"
    if kind == "FactSet":
        facts = element.get("facts")
        if not isinstance(facts, list) or not facts:
            return "FactSet needs facts"
        for fact in facts:
            if not (isinstance(fact.get("title"), str) and isinstance(fact.get("value"), str)):
                return f"bad fact {fact!r}"
    if kind == "RichTextBlock":
        inlines = element.get("inlines")
        if not isinstance(inlines, list) or not inlines:
            return "RichTextBlock needs inlines"
        for run in inlines:
            if isinstance(run, str):
                continue
            if run.get("type") != "TextRun" or not isinstance(run.get("text"), str):
                return f"bad inline {run!r:.80}"
    return None


def _card_problem(card: Any) -> str | None:
    if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
        return "content is not an AdaptiveCard"
    if card.get("version") not in _VERSIONS:
        return f"unsupported version {card.get('version')!r}"
    body = card.get("body")
    if not isinstance(body, list) or not body:
        return "the card has no body"
    for element in body:
        if problem := _element_problem(element):
            return problem
    for action in card.get("actions", []):
        if action.get("type") not in _ACTIONS:
            return f"unknown action {action!r:.80}"
        if action["type"] == "Action.OpenUrl" and not re.match(r"https?://", action.get("url", "")):
            return "Action.OpenUrl needs an http(s) url"
    return None


def teams_check(request: Recorded) -> tuple[int, Any] | None:
    """What the Workflows trigger and the post-card action refuse."""
    if request.path != FLOW_PATH or f"sig={SECRET}" not in request.query:
        return 401, {"error": {"code": "DirectApiAuthorizationRequired", "message": "bad sig"}}
    invalid = {"error": {"code": "InvalidRequestContent", "message": ""}}
    if not request.headers.get("content-type", "").startswith("application/json"):
        return 415, invalid
    try:
        body = request.json()
    except ValueError:
        return 400, invalid
    if not isinstance(body, dict) or body.get("type") != "message":
        return 400, invalid
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return 400, invalid
    for attachment in attachments:
        if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
            return 400, invalid
        if problem := _card_problem(attachment.get("content")):
            invalid["error"]["message"] = problem
            return 400, invalid
    return None


@pytest.fixture
async def teams() -> Any:
    async with platform_receiver(teams_check, Scripted(202, "")) as receiver:
        yield receiver


def flow_url(receiver: Receiver) -> str:
    return f"{receiver.url}{FLOW_PATH}?{FLOW_QUERY}"


def channel(url: str, guard: NetGuard, client: httpx.AsyncClient) -> TeamsChannel:
    return TeamsChannel(TeamsConfig(webhook_url=SecretStr(url)), client=client, guard=guard)


async def send(receiver: Receiver, d: Any) -> tuple[Any, dict[str, Any]]:
    async with http_client() as client:
        result = await channel(flow_url(receiver), LOCAL, client).send(d)
    assert receiver.refused == [], receiver.refused
    card: dict[str, Any] = receiver.requests[-1].json()["attachments"][0]["content"]
    return result, card


def facts(card: dict[str, Any]) -> dict[str, str]:
    (factset,) = [e for e in card["body"] if e["type"] == "FactSet"]
    return {f["title"]: f["value"] for f in factset["facts"]}


def texts(card: dict[str, Any]) -> str:
    """All the text of the card, one element per line."""
    lines = []
    for element in card["body"]:
        if element["type"] == "TextBlock":
            lines.append(element["text"])
        elif element["type"] == "RichTextBlock":
            lines.append("".join(run["text"] for run in element["inlines"]))
    return "\n".join(lines)


async def test_new_handoff_is_an_adaptive_card(teams: Receiver) -> None:
    handoff = view()
    result, card = await send(teams, delivery(EventType.created, handoff, "teams"))
    assert result.status_code == 202
    message = teams.requests[-1].json()
    assert message["type"] == "message"
    assert message["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["version"] == "1.4"
    title = card["body"][0]
    assert title["type"] == "TextBlock" and title["weight"] == "Bolder"
    assert title["text"] == "New handoff from Support (high urgency)"
    assert title["color"] == "Attention"  # critical
    assert facts(card) == {
        "Urgency": "high (critical)",
        "Reason": "explicit request",
        "Bot": "Support",
        "Status": "pending",
        "User": "Ada",
    }
    body = texts(card)
    assert "Summary: The customer was charged twice for order 1042" in body
    assert "user: I want to talk to a human." in body
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open handoff", "url": handoff.url}
    ]
    assert f"handoff {handoff.id}" in body
    assert "{{DATE(2025-03-04T10:15:00Z, SHORT)}}" in body


@pytest.mark.parametrize(
    ("event", "fields", "data", "title", "said"),
    [
        (
            EventType.assigned,
            {"status": "assigned", "assignee_name": "Alice"},
            {"assignee_name": "Alice", "by": "Alice"},
            "Handoff from Support accepted by Alice",
            "Alice is handling the conversation now.",
        ),
        (
            EventType.resolved,
            {"status": "resolved", "assignee_name": "Alice", "resolution_notes": "Refunded."},
            {"by": "Alice"},
            "Handoff from Support resolved by Alice",
            "Resolution notes: Refunded.",
        ),
        (
            EventType.cancelled,
            {"status": "cancelled"},
            {"why": "user left"},
            "Handoff from Support cancelled",
            "Closed without a resolution (user left)",
        ),
        (
            EventType.escalated,
            {"urgency": "critical", "severity": "critical"},
            {"breach": "accept", "from_urgency": "medium", "to_urgency": "critical", "level": 1},
            "Handoff from Support escalated to critical urgency (was medium): not accepted in time",
            "Nobody accepted it within its SLA target",
        ),
    ],
)
async def test_follow_ups_say_what_changed_and_who(
    teams: Receiver,
    event: EventType,
    fields: dict[str, Any],
    data: dict[str, Any],
    title: str,
    said: str,
) -> None:
    handoff = replace(view(urgency="medium", severity="warning"), **fields)
    _, card = await send(teams, delivery(event, handoff, "teams", data))
    assert card["body"][0]["text"] == title
    assert said in texts(card)
    assert ("Last messages" in texts(card)) is (event is EventType.escalated)
    assert facts(card)["Status"] == fields.get("status", "pending")
    assert card["actions"][0]["url"] == handoff.url


async def test_test_notification(teams: Receiver) -> None:
    d = delivery(EventType.test, None, "teams")
    result, card = await send(teams, d)
    assert result.status_code == 202
    assert card["body"][0]["text"] == "Nectar test notification"
    assert "handoff notifications reach this channel" in texts(card)
    assert d.id in texts(card)
    assert "actions" not in card


async def test_user_text_is_not_markdown(teams: Receiver) -> None:
    """Summary and messages go in text runs, which Teams shows as typed: no forged links."""
    handoff = view(summary="[Reset your password](https://evil.example) **now**")
    _, card = await send(teams, delivery(EventType.created, handoff, "teams"))
    (summary,) = [
        e for e in card["body"] if e["type"] == "RichTextBlock" and "Summary" in json.dumps(e)
    ]
    assert summary["inlines"][1]["text"] == handoff.summary
    markdown = [e["text"] for e in card["body"] if e["type"] == "TextBlock"]
    assert not any("evil.example" in text for text in markdown)


async def test_any_2xx_is_success(teams: Receiver) -> None:
    teams.then(200, "")
    result, _ = await send(teams, delivery(EventType.created, view(), "teams"))
    assert result.status_code == 200


async def test_receiver_refuses_what_workflows_refuses(teams: Receiver) -> None:
    """The stand-in is strict: the old MessageCard or a card without a body is refused."""
    async with http_client() as client:
        old = {"@type": "MessageCard", "text": "hi"}
        r = await client.post(flow_url(teams), json=old)
        assert r.status_code == 400
        empty = {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {"type": "AdaptiveCard", "version": "1.4", "body": []},
                }
            ],
        }
        r = await client.post(flow_url(teams), json=empty)
        assert r.status_code == 400 and r.json()["error"]["message"] == "the card has no body"


async def test_failures_are_mapped_and_the_signature_stays_secret(
    teams: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    await assert_failures_mapped(
        channel,
        teams,
        flow_url(teams),
        SECRET,
        delivery(EventType.created, view(), "teams"),
        caplog,
    )


async def test_a_wrong_signature_is_permanent(teams: Receiver) -> None:
    async with http_client() as client:
        wrong = flow_url(teams).replace(SECRET, "forged")
        error = await failure(
            channel(wrong, LOCAL, client).send(delivery(EventType.created, view(), "teams"))
        )
    assert (error.retriable, error.status_code) == (False, 401)
    assert "forged" not in str(error)


async def test_not_configured_is_permanent() -> None:
    async with http_client() as client:
        teams = TeamsChannel(TeamsConfig(), client=client, guard=LOCAL)
        with pytest.raises(DeliveryFailed) as caught:
            await teams.send(delivery(EventType.created, view(), "teams"))
    assert not caught.value.retriable
