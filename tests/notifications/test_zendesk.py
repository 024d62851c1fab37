"""The Zendesk channel against a local stand-in for the Support API that refuses what
Zendesk refuses (401 without the "{email}/token" Basic auth, 422 for a ticket without a
comment body or with an unknown priority) and answers like it (201 {"ticket": {...}})."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from nectar.config import ZendeskConfig
from nectar.notifications.channels.base import EventType
from nectar.notifications.channels.wording import TEST_TITLE
from nectar.notifications.channels.zendesk import ZendeskChannel, priority
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
from tests.receivers import Receiver, Recorded

EMAIL = "nectar-bot@acme.example"
TOKEN = "6wiIBWbGkBMo1mRDMuVwkw1EPsNkeUj95PIz2akv"
CREDENTIALS = base64.b64encode(f"{EMAIL}/token:{TOKEN}".encode()).decode()
TICKETS = "/api/v2/tickets.json"
ONE_TICKET = re.compile(r"^/api/v2/tickets/(\d+)\.json$")
STATUSES = {"new", "open", "pending", "hold", "solved"}
PRIORITIES = {"low", "normal", "high", "urgent"}


def _invalid(field: str, message: str) -> tuple[int, Any]:
    return 422, {
        "error": "RecordInvalid",
        "description": "Record validation errors",
        "details": {field: [{"description": message}]},
    }


def zendesk_check(request: Recorded) -> tuple[int, Any] | None:
    """What the Zendesk Support API refuses."""
    if request.headers.get("authorization") != f"Basic {CREDENTIALS}":
        return 401, {"error": "Couldn't authenticate you"}
    if request.method == "GET":
        if request.path == TICKETS or ONE_TICKET.match(request.path):
            return None
        return 404, {"error": "InvalidEndpoint", "description": "Not found"}
    if request.method not in ("POST", "PUT"):
        return 405, {"error": "MethodNotAllowed"}
    if not request.headers.get("content-type", "").startswith("application/json"):
        return 415, {"error": "Unsupported Media Type"}
    try:
        body = request.json()
    except ValueError:
        return 400, {"error": "Unprocessable Entity", "description": "Malformed JSON"}
    ticket = body.get("ticket") if isinstance(body, dict) else None
    if not isinstance(ticket, dict):
        return 400, {"error": "InvalidEndpoint", "description": "ticket parameter is missing"}
    if request.method == "POST":
        if request.path != TICKETS:
            return 404, {"error": "InvalidEndpoint", "description": "Not found"}
        if not request.headers.get("idempotency-key"):  # ours: every create must carry one
            return 400, {"error": "Idempotency-Key missing"}
        comment = ticket.get("comment")
        if not isinstance(comment, dict) or not str(comment.get("body", "")).strip():
            return _invalid("description", "Description: cannot be blank")
    elif not ONE_TICKET.match(request.path):
        return 404, {"error": "InvalidEndpoint", "description": "Not found"}
    if "comment" in ticket:
        comment = ticket["comment"]
        if not isinstance(comment, dict) or not isinstance(comment.get("public", True), bool):
            return _invalid("comment", "Comment: is invalid")
    if "priority" in ticket and ticket["priority"] not in PRIORITIES:
        return _invalid("priority", "Priority: is invalid")
    if "status" in ticket and ticket["status"] not in STATUSES:
        return _invalid("status", "Status: is invalid")
    for key in ("tags", "additional_tags"):
        tags = ticket.get(key, [])
        if not isinstance(tags, list) or any(
            not isinstance(t, str) or not t or re.search(r"\s", t) for t in tags
        ):
            return _invalid(key, "Tags: must be single words")
    return None


def ticket(ticket_id: int, **fields: Any) -> dict[str, Any]:
    values = {
        "id": ticket_id,
        "url": f"https://acme.zendesk.com/api/v2/tickets/{ticket_id}.json",
        "status": "new",
        "assignee_id": None,
    }
    return {"ticket": {**values, **fields}}


def make(url: str, guard: NetGuard, client: httpx.AsyncClient, **config: Any) -> ZendeskChannel:
    settings = ZendeskConfig(api_endpoint=url, email=EMAIL, api_key=SecretStr(TOKEN), **config)
    return ZendeskChannel(settings, client=client, guard=guard)


@pytest.fixture(scope="module")
async def zendesk_server() -> AsyncIterator[Receiver]:
    async with platform_receiver(zendesk_check) as receiver:
        yield receiver


@pytest.fixture
def zendesk(zendesk_server: Receiver) -> Receiver:
    return fresh(zendesk_server)


def fresh(receiver: Receiver) -> Receiver:
    """One receiver serves the module (starting one per test costs more than the test):
    each test starts with nothing recorded and nothing scripted."""
    receiver.requests.clear()
    receiver.refused.clear()
    receiver._script.clear()
    receiver.arrived.clear()
    return receiver


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with http_client() as made:
        yield made


def _refs(ticket_id: int) -> dict[str, Any]:
    return {"zendesk_ticket_id": ticket_id}


async def test_a_new_handoff_opens_an_internal_ticket(
    zendesk: Receiver, client: httpx.AsyncClient
) -> None:
    handoff = view(
        summary="Ada was charged twice for order 1042.",
        transcript=[
            {"role": "user", "content": "Please call me back today"},
            {"role": "assistant", "content": "A colleague will call you."},
        ],
    )
    sample = delivery(EventType.created, handoff, "zendesk")
    zendesk.then(201, ticket(35436), headers={"x-idempotency-lookup": "miss"})

    result = await make(zendesk.url, LOCAL, client).send(sample)

    assert (result.status_code, result.external_refs) == (201, _refs(35436))
    [sent] = zendesk.requests
    assert (sent.method, sent.path) == ("POST", TICKETS)
    assert sent.headers["idempotency-key"] == sample.idempotency_key
    created = sent.json()["ticket"]
    assert created["external_id"] == handoff.id
    assert created["tags"] == ["nectar", "explicit_request"]
    assert created["priority"] == "high"
    assert "Support" in created["subject"] and "explicit request" in created["subject"]
    assert created["comment"]["public"] is False
    body = created["comment"]["body"]
    assert "Ada was charged twice for order 1042." in body
    assert "user: Please call me back today" in body
    assert "assistant: A colleague will call you." in body
    assert handoff.url in body


@pytest.mark.parametrize(
    ("urgency", "floor", "expected"),
    [
        ("low", "normal", "normal"),
        ("medium", "normal", "normal"),
        ("high", "normal", "high"),
        ("critical", "normal", "urgent"),
        ("low", "low", "low"),
        ("medium", "low", "normal"),
        ("low", "high", "high"),
        ("critical", "high", "urgent"),
        ("unheard-of", "normal", "normal"),
    ],
)
def test_priority_follows_urgency_with_ticket_priority_as_the_floor(
    urgency: str, floor: str, expected: str
) -> None:
    assert priority(urgency, floor) == expected


async def test_ticket_priority_floor_is_applied_to_new_tickets(
    zendesk: Receiver, client: httpx.AsyncClient
) -> None:
    zendesk.then(201, ticket(1))
    channel = make(zendesk.url, LOCAL, client, ticket_priority="high")
    await channel.send(delivery(EventType.created, view(urgency="low"), "zendesk"))
    assert zendesk.requests[0].json()["ticket"]["priority"] == "high"


async def test_follow_ups_update_the_stored_ticket(
    zendesk: Receiver, client: httpx.AsyncClient
) -> None:
    channel = make(zendesk.url, LOCAL, client)
    handoff = view(urgency="high")
    refs = _refs(35436)

    def follow_up(event: EventType, handoff: Any = handoff, **data: Any) -> Any:
        return replace(delivery(event, handoff, "zendesk", data), external_refs=refs)

    zendesk.then(200, ticket(35436, status="open"))
    result = await channel.send(follow_up(EventType.assigned, assignee_name="Grace"))
    assert result.external_refs == refs
    sent = zendesk.requests[-1]
    assert (sent.method, sent.path) == ("PUT", "/api/v2/tickets/35436.json")
    changes = sent.json()["ticket"]
    assert set(changes) == {"comment"}  # a note only: Zendesk's own workflow is left alone
    assert changes["comment"]["public"] is False
    assert "accepted by Grace" in changes["comment"]["body"]

    zendesk.then(200, ticket(35436, priority="urgent"))
    escalated = replace(handoff, urgency="critical")
    await channel.send(follow_up(EventType.escalated, escalated, from_urgency="high"))
    changes = zendesk.requests[-1].json()["ticket"]
    assert changes["priority"] == "urgent"
    assert "escalated to critical urgency (was high)" in changes["comment"]["body"]

    # Solving needs an assignee: an unassigned ticket goes to the API user.
    zendesk.then(200, ticket(35436, status="open", assignee_id=None))
    zendesk.then(200, ticket(35436, status="solved"))
    resolved = replace(handoff, status="resolved", resolution_notes="Refunded order 1042.")
    await channel.send(follow_up(EventType.resolved, resolved, by="Grace"))
    look, put = zendesk.requests[-2:]
    assert (look.method, look.path) == ("GET", "/api/v2/tickets/35436.json")
    changes = put.json()["ticket"]
    assert changes["status"] == "solved"
    assert changes["assignee_email"] == EMAIL
    assert "Resolution notes: Refunded order 1042." in changes["comment"]["body"]
    assert changes["comment"]["public"] is False

    # An assigned ticket keeps its assignee.
    zendesk.then(200, ticket(35436, status="open", assignee_id=9001))
    zendesk.then(200, ticket(35436, status="solved"))
    await channel.send(follow_up(EventType.resolved, resolved))
    assert "assignee_email" not in zendesk.requests[-1].json()["ticket"]

    # Cancelled: solved too (the API cannot close), told apart by a tag and the note.
    zendesk.then(200, ticket(35436, status="open", assignee_id=9001))
    zendesk.then(200, ticket(35436, status="solved"))
    cancelled = replace(handoff, status="cancelled")
    await channel.send(follow_up(EventType.cancelled, cancelled, why="duplicate of ticket 35435"))
    changes = zendesk.requests[-1].json()["ticket"]
    assert changes["status"] == "solved"
    assert changes["additional_tags"] == ["nectar_cancelled"]
    assert "cancelled" in changes["comment"]["body"]
    assert "duplicate of ticket 35435" in changes["comment"]["body"]


async def test_a_closed_ticket_is_left_alone(zendesk: Receiver, client: httpx.AsyncClient) -> None:
    zendesk.then(200, ticket(35436, status="closed", assignee_id=9001))
    sample = replace(
        delivery(EventType.resolved, view(status="resolved"), "zendesk"),
        external_refs=_refs(35436),
    )
    result = await make(zendesk.url, LOCAL, client).send(sample)
    assert "already closed" in result.detail
    assert [r.method for r in zendesk.requests] == ["GET"]


async def test_a_follow_up_without_a_ticket_id_finds_it_by_external_id(
    zendesk: Receiver, client: httpx.AsyncClient
) -> None:
    handoff = view()
    zendesk.then(200, {"tickets": [ticket(88)["ticket"], ticket(77)["ticket"]], "count": 2})
    zendesk.then(200, ticket(77))
    result = await make(zendesk.url, LOCAL, client).send(
        delivery(EventType.assigned, handoff, "zendesk", {"assignee_name": "Grace"})
    )
    look, put = zendesk.requests
    assert (look.method, look.path) == ("GET", TICKETS)
    assert parse_qs(look.query) == {"external_id": [handoff.id]}
    assert put.path == "/api/v2/tickets/77.json"  # the oldest, should there be two
    assert result.external_refs == _refs(77)  # remembered for the next follow-up


async def test_a_follow_up_before_the_ticket_exists_is_retried(
    zendesk: Receiver, client: httpx.AsyncClient
) -> None:
    zendesk.then(200, {"tickets": [], "count": 0})
    error = await failure(
        make(zendesk.url, LOCAL, client).send(delivery(EventType.resolved, view(), "zendesk"))
    )
    assert error.retriable and "in flight" in str(error)
    assert [r.method for r in zendesk.requests] == ["GET"]


async def test_a_retried_create_repeats_the_same_idempotency_key_and_body(
    zendesk: Receiver, client: httpx.AsyncClient
) -> None:
    channel = make(zendesk.url, LOCAL, client)
    first = delivery(EventType.created, view(), "zendesk")

    zendesk.then(503, {"error": "Service Unavailable"})
    error = await failure(channel.send(first))
    assert error.retriable

    zendesk.then(200, {"tickets": [], "count": 0})  # the first attempt made nothing
    zendesk.then(201, ticket(5), headers={"x-idempotency-lookup": "miss"})
    result = await channel.send(replace(first, attempt=2))
    assert result.external_refs == _refs(5)

    posts = [r for r in zendesk.requests if r.method == "POST"]
    assert len(posts) == 2
    assert posts[0].headers["idempotency-key"] == posts[1].headers["idempotency-key"]
    assert posts[0].headers["idempotency-key"] == first.idempotency_key
    # Zendesk refuses a reused key with a different payload: the body must not change.
    assert posts[0].body == posts[1].body


async def test_a_create_whose_answer_was_lost_is_not_repeated(zendesk: Receiver) -> None:
    first = delivery(EventType.created, view(), "zendesk")
    async with http_client(seconds=0.3) as slow_client:
        zendesk.then(201, ticket(12), delay=1.0)  # made, but the answer comes too late
        error = await failure(make(zendesk.url, LOCAL, slow_client).send(first))
        assert error.retriable and "timed out" in str(error)

    async with http_client() as client:
        zendesk.then(200, {"tickets": [ticket(12)["ticket"]], "count": 1})
        result = await make(zendesk.url, LOCAL, client).send(replace(first, attempt=2))
    assert result.external_refs == _refs(12)
    assert [r.method for r in zendesk.requests] == ["POST", "GET"]


async def test_a_create_that_already_has_a_ticket_sends_nothing(
    zendesk: Receiver, client: httpx.AsyncClient
) -> None:
    sample = replace(delivery(EventType.created, view(), "zendesk"), external_refs=_refs(3))
    result = await make(zendesk.url, LOCAL, client).send(sample)
    assert result.external_refs == _refs(3)
    assert zendesk.requests == [] and zendesk.refused == []


async def test_a_test_notification_opens_a_test_ticket(
    zendesk: Receiver, client: httpx.AsyncClient
) -> None:
    zendesk.then(201, ticket(99))
    sample = delivery(EventType.test, None, "zendesk")
    result = await make(zendesk.url, LOCAL, client).send(sample)
    assert result.external_refs == {}  # no handoff to remember it for
    created = zendesk.requests[0].json()["ticket"]
    assert created["subject"] == TEST_TITLE
    assert created["tags"] == ["nectar", "nectar_test"]
    assert created["external_id"] == f"nectar-test-{sample.id}"
    assert created["priority"] == "low"


async def test_the_api_root_is_accepted_as_the_endpoint(
    zendesk: Receiver, client: httpx.AsyncClient
) -> None:
    zendesk.then(201, ticket(4))
    channel = make(f"{zendesk.url}/api/v2/", LOCAL, client)
    await channel.send(delivery(EventType.created, view(), "zendesk"))
    assert zendesk.requests[0].path == TICKETS


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_permanent(
    zendesk: Receiver, client: httpx.AsyncClient, status: int
) -> None:
    zendesk.then(status, {"error": "nope"})
    error = await failure(
        make(zendesk.url, LOCAL, client).send(delivery(EventType.created, view(), "zendesk"))
    )
    assert (error.retriable, error.status_code) == (False, status)


async def test_a_wrong_token_is_refused_and_never_shown(
    zendesk: Receiver, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "WRONG" + TOKEN[5:]
    settings = ZendeskConfig(api_endpoint=zendesk.url, email=EMAIL, api_key=SecretStr(wrong))
    channel = ZendeskChannel(settings, client=client, guard=LOCAL)
    error = await failure(channel.send(delivery(EventType.created, view(), "zendesk")))
    assert (error.retriable, error.status_code) == (False, 401)
    assert "authenticate" in str(error)
    for secret in (wrong, base64.b64encode(f"{EMAIL}/token:{wrong}".encode()).decode()):
        assert secret not in str(error) and secret not in caplog.text


async def test_failures_are_mapped_and_the_token_never_shown(
    zendesk: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    sample = delivery(EventType.created, view(), "zendesk")
    await assert_failures_mapped(make, zendesk, zendesk.url, TOKEN, sample, caplog)
    assert CREDENTIALS not in caplog.text


async def test_every_request_carries_the_token_auth_and_it_stays_out_of_logs(
    zendesk: Receiver, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    channel = make(zendesk.url, LOCAL, client)
    zendesk.then(201, ticket(1))
    await channel.send(delivery(EventType.created, view(), "zendesk"))
    zendesk.then(200, {"tickets": [ticket(1)["ticket"]], "count": 1})
    zendesk.then(200, ticket(1))
    await channel.send(delivery(EventType.escalated, view(), "zendesk"))
    assert len(zendesk.requests) == 3 and zendesk.refused == []
    assert TOKEN not in caplog.text and CREDENTIALS not in caplog.text
    assert "Zendesk ticket 1" in caplog.text


async def test_missing_settings_fail_for_good_without_a_request(
    zendesk: Receiver, client: httpx.AsyncClient
) -> None:
    channel = ZendeskChannel(
        ZendeskConfig(api_endpoint=zendesk.url, email=EMAIL), client=client, guard=LOCAL
    )
    error = await failure(channel.send(delivery(EventType.created, view(), "zendesk")))
    assert not error.retriable and "api_key" in str(error)
    assert zendesk.requests == [] and zendesk.refused == []
