"""The ServiceNow channel against a local stand-in for the Table API that refuses what an
instance refuses (401 without Basic auth, 406 without ``Accept: application/json``, 403
data policy when resolving without close code and notes) and answers like one (201
``{"result": {...}}`` on create, 200 on GET and PATCH)."""

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

from nectar.config import ServiceNowConfig
from nectar.notifications.channels.base import EventType
from nectar.notifications.channels.servicenow import ServiceNowChannel, urgency_impact
from nectar.notifications.channels.wording import TEST_TITLE
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

USERNAME = "nectar.integration"
PASSWORD = "Sn0w-P4ss!word-8c1f"
CREDENTIALS = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
TABLE = "/api/now/table/incident"
ONE_RECORD = re.compile(rf"^{TABLE}/([0-9a-f]{{32}})$")
SYS_ID = "46d44a5bdb1c2010e5a5b0e1f3961940"
NOTHING: dict[str, Any] = {"result": []}
LEVELS = {"1", "2", "3"}
STATES = {"1", "2", "3", "6", "7", "8"}


def _failure(message: str, detail: str, status: int) -> tuple[int, Any]:
    return status, {"error": {"message": message, "detail": detail}, "status": "failure"}


def servicenow_check(request: Recorded) -> tuple[int, Any] | None:
    """What the Table API refuses."""
    if request.headers.get("authorization") != f"Basic {CREDENTIALS}":
        return _failure("User Not Authenticated", "Required to provide Auth information", 401)
    if "application/json" not in request.headers.get("accept", ""):
        return _failure("Not Acceptable", "Accept must allow application/json", 406)
    if request.method == "GET":
        query = parse_qs(request.query)
        if request.path != TABLE or not query.get("sysparm_query", [""])[0]:
            return _failure("Invalid request", "Only correlation lookups are expected", 400)
        return None
    if request.method not in ("POST", "PATCH"):
        return _failure("Method not allowed", request.method, 405)
    if not request.headers.get("content-type", "").startswith("application/json"):
        return _failure("Unsupported Media Type", "Content-Type must be application/json", 415)
    try:
        record = request.json()
    except ValueError:
        return _failure("Exception while reading request", "Cannot decode JSON", 400)
    if not isinstance(record, dict):
        return _failure("Exception while reading request", "Expected an object", 400)
    if request.method == "POST":
        if request.path != TABLE:
            return _failure("Invalid table", request.path, 400)
        for field in ("short_description", "description", "correlation_id"):
            if not isinstance(record.get(field), str) or not record[field].strip():
                return _failure("Operation Failed", f"Data Policy Exception: {field}", 403)
        if len(record["short_description"]) > 160:
            return _failure("Operation Failed", "short_description too long", 400)
    elif not ONE_RECORD.match(request.path):
        return _failure("No Record found", "Record doesn't exist or ACL restricts it", 404)
    for field in ("urgency", "impact"):
        if field in record and record[field] not in LEVELS:
            return _failure("Operation Failed", f"Invalid {field}", 400)
    if "state" in record and record["state"] not in STATES:
        return _failure("Operation Failed", "Invalid state", 400)
    if record.get("state") == "6" and not (record.get("close_code") and record.get("close_notes")):
        return _failure(
            "Operation Failed",
            "Data Policy Exception: The following fields are mandatory: Resolution code, "
            "Resolution notes",
            403,
        )
    return None


def incident(number: str = "INC0010001", sys_id: str = SYS_ID, **fields: Any) -> dict[str, Any]:
    return {"sys_id": sys_id, "number": number, "state": "1", **fields}


def make(url: str, guard: NetGuard, client: httpx.AsyncClient, **config: Any) -> ServiceNowChannel:
    settings = ServiceNowConfig(
        instance_url=url, username=USERNAME, password=SecretStr(PASSWORD), **config
    )
    return ServiceNowChannel(settings, client=client, guard=guard)


@pytest.fixture(scope="module")
async def servicenow_server() -> AsyncIterator[Receiver]:
    # Unscripted lookups find nothing, like an instance that never heard of the handoff.
    async with platform_receiver(servicenow_check, Scripted(200, NOTHING)) as receiver:
        yield receiver


@pytest.fixture
def servicenow(servicenow_server: Receiver) -> Receiver:
    return fresh(servicenow_server)


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


REFS = {"servicenow_sys_id": SYS_ID, "servicenow_number": "INC0010001"}


async def test_a_new_handoff_opens_an_incident_after_checking_for_one(
    servicenow: Receiver, client: httpx.AsyncClient
) -> None:
    handoff = view(
        urgency="critical",
        summary="Ada cannot log in since her card was charged twice.",
    )
    servicenow.then(200, NOTHING)
    servicenow.then(201, {"result": incident()})
    channel = make(servicenow.url, LOCAL, client, assignment_group="Service Desk")

    result = await channel.send(delivery(EventType.created, handoff, "servicenow"))

    assert (result.status_code, result.external_refs) == (201, REFS)
    look, post = servicenow.requests
    assert (look.method, look.path) == ("GET", TABLE)
    query = parse_qs(look.query)
    assert query["sysparm_query"] == [f"correlation_id={handoff.id}"]
    assert query["sysparm_limit"] == ["1"]
    assert (post.method, post.path) == ("POST", TABLE)
    record = post.json()
    assert record["correlation_id"] == handoff.id
    assert record["correlation_display"] == "Nectar"
    assert (record["urgency"], record["impact"]) == ("1", "1")
    assert record["assignment_group"] == "Service Desk"
    assert "Support" in record["short_description"]
    assert "Ada cannot log in since her card was charged twice." in record["description"]
    assert handoff.url in record["description"]
    assert "user: I want to talk to a human." in record["description"]


@pytest.mark.parametrize(
    ("urgency", "expected"),
    [
        ("critical", ("1", "1")),
        ("high", ("1", "2")),
        ("medium", ("2", "2")),
        ("low", ("3", "2")),
        ("unheard-of", ("2", "2")),
    ],
)
def test_urgency_and_impact_follow_our_urgency(urgency: str, expected: tuple[str, str]) -> None:
    assert urgency_impact(urgency) == expected


async def test_no_assignment_group_unless_configured(
    servicenow: Receiver, client: httpx.AsyncClient
) -> None:
    servicenow.then(200, NOTHING)
    servicenow.then(201, {"result": incident()})
    await make(servicenow.url, LOCAL, client).send(
        delivery(EventType.created, view(urgency="low"), "servicenow")
    )
    record = servicenow.requests[1].json()
    assert "assignment_group" not in record
    assert (record["urgency"], record["impact"]) == ("3", "2")


async def test_an_existing_incident_is_reused_instead_of_creating_another(
    servicenow: Receiver, client: httpx.AsyncClient
) -> None:
    servicenow.then(200, {"result": [incident("INC0010042")]})
    result = await make(servicenow.url, LOCAL, client).send(
        delivery(EventType.created, view(), "servicenow")
    )
    assert result.external_refs == {**REFS, "servicenow_number": "INC0010042"}
    assert [r.method for r in servicenow.requests] == ["GET"]


async def test_a_create_whose_answer_was_lost_makes_one_incident(servicenow: Receiver) -> None:
    first = delivery(EventType.created, view(), "servicenow")
    async with http_client(seconds=0.3) as slow_client:
        servicenow.then(200, NOTHING)
        servicenow.then(201, {"result": incident()}, delay=1.0)  # made; the answer is late
        error = await failure(make(servicenow.url, LOCAL, slow_client).send(first))
        assert error.retriable and "timed out" in str(error)

    async with http_client() as client:
        servicenow.then(200, {"result": [incident()]})
        result = await make(servicenow.url, LOCAL, client).send(replace(first, attempt=2))
    assert result.external_refs == REFS
    assert [r.method for r in servicenow.requests] == ["GET", "POST", "GET"]


async def test_a_create_that_already_has_an_incident_sends_nothing(
    servicenow: Receiver, client: httpx.AsyncClient
) -> None:
    sample = replace(delivery(EventType.created, view(), "servicenow"), external_refs=REFS)
    result = await make(servicenow.url, LOCAL, client).send(sample)
    assert result.external_refs == REFS
    assert servicenow.requests == [] and servicenow.refused == []


async def test_follow_ups_update_the_stored_incident(
    servicenow: Receiver, client: httpx.AsyncClient
) -> None:
    channel = make(servicenow.url, LOCAL, client)
    handoff = view(urgency="medium")

    def follow_up(event: EventType, handoff: Any = handoff, **data: Any) -> Any:
        return replace(delivery(event, handoff, "servicenow", data), external_refs=REFS)

    async def patched(event: EventType, handoff: Any = handoff, **data: Any) -> dict[str, Any]:
        servicenow.then(200, {"result": incident()})
        result = await channel.send(follow_up(event, handoff, **data))
        assert result.external_refs == REFS
        sent = servicenow.requests[-1]
        assert (sent.method, sent.path) == ("PATCH", f"{TABLE}/{SYS_ID}")
        body: dict[str, Any] = sent.json()
        return body

    body = await patched(EventType.assigned, assignee_name="Grace")
    assert body["state"] == "2"
    assert "accepted by Grace" in body["work_notes"]

    body = await patched(
        EventType.escalated, replace(handoff, urgency="high"), from_urgency="medium"
    )
    assert (body["urgency"], body["impact"]) == ("1", "2")
    assert "escalated to high urgency (was medium)" in body["work_notes"]
    assert "state" not in body

    notes = "Password reset; the customer confirmed it works."
    body = await patched(EventType.resolved, replace(handoff, resolution_notes=notes), by="Grace")
    assert body["state"] == "6"
    assert body["close_code"] == "Solved (Permanently)"
    assert body["close_notes"] == notes
    assert "resolved by Grace" in body["work_notes"]

    body = await patched(EventType.resolved, replace(handoff, resolution_notes=None))
    assert body["state"] == "6" and body["close_notes"]  # mandatory even without notes

    body = await patched(EventType.cancelled, why="The customer left")
    assert body["state"] == "8"
    assert "cancelled" in body["work_notes"]
    assert servicenow.refused == []
    assert all(r.method == "PATCH" for r in servicenow.requests)


async def test_a_follow_up_without_a_sys_id_finds_the_incident_by_correlation_id(
    servicenow: Receiver, client: httpx.AsyncClient
) -> None:
    handoff = view()
    servicenow.then(200, {"result": [incident("INC0010007")]})
    servicenow.then(200, {"result": incident("INC0010007", state="2")})
    result = await make(servicenow.url, LOCAL, client).send(
        delivery(EventType.assigned, handoff, "servicenow", {"assignee_name": "Grace"})
    )
    look, patch = servicenow.requests
    assert parse_qs(look.query)["sysparm_query"] == [f"correlation_id={handoff.id}"]
    assert patch.path == f"{TABLE}/{SYS_ID}"
    assert result.external_refs == {**REFS, "servicenow_number": "INC0010007"}


async def test_a_follow_up_before_the_incident_exists_is_retried(
    servicenow: Receiver, client: httpx.AsyncClient
) -> None:
    error = await failure(
        make(servicenow.url, LOCAL, client).send(delivery(EventType.resolved, view(), "servicenow"))
    )
    assert error.retriable and "in flight" in str(error)
    assert [r.method for r in servicenow.requests] == ["GET"]


async def test_a_test_notification_opens_a_low_incident(
    servicenow: Receiver, client: httpx.AsyncClient
) -> None:
    sample = delivery(EventType.test, None, "servicenow")
    servicenow.then(200, NOTHING)
    servicenow.then(201, {"result": incident("INC0010099")})
    result = await make(servicenow.url, LOCAL, client).send(sample)
    assert result.external_refs == {}
    record = servicenow.requests[1].json()
    assert record["short_description"] == TEST_TITLE
    assert record["correlation_id"] == f"nectar-test-{sample.id}"
    assert (record["urgency"], record["impact"]) == ("3", "3")


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_client_errors_are_permanent(
    servicenow: Receiver, client: httpx.AsyncClient, status: int
) -> None:
    servicenow.then(200, NOTHING)
    servicenow.then(status, {"error": {"message": "nope"}, "status": "failure"})
    error = await failure(
        make(servicenow.url, LOCAL, client).send(delivery(EventType.created, view(), "servicenow"))
    )
    assert (error.retriable, error.status_code) == (False, status)


async def test_a_wrong_password_is_refused_and_never_shown(
    servicenow: Receiver, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = ServiceNowConfig(
        instance_url=servicenow.url, username=USERNAME, password=SecretStr("not-" + PASSWORD)
    )
    channel = ServiceNowChannel(settings, client=client, guard=LOCAL)
    error = await failure(channel.send(delivery(EventType.created, view(), "servicenow")))
    assert (error.retriable, error.status_code) == (False, 401)
    assert "User Not Authenticated" in str(error)
    assert PASSWORD not in str(error) and PASSWORD not in caplog.text


async def test_failures_are_mapped_and_the_password_never_shown(
    servicenow: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    sample = delivery(EventType.created, view(), "servicenow")
    await assert_failures_mapped(make, servicenow, servicenow.url, PASSWORD, sample, caplog)
    assert CREDENTIALS not in caplog.text


async def test_a_failed_create_is_mapped_too(
    servicenow: Receiver, client: httpx.AsyncClient
) -> None:
    channel = make(servicenow.url, LOCAL, client)
    sample = delivery(EventType.created, view(), "servicenow")
    servicenow.then(200, NOTHING)
    servicenow.then(429, {"error": {"message": "Too many requests"}}, headers={"Retry-After": "30"})
    error = await failure(channel.send(sample))
    assert (error.retriable, error.status_code, error.retry_after) == (True, 429, 30.0)

    servicenow.then(200, NOTHING)
    servicenow.then(500, {"error": {"message": "Internal error"}})
    error = await failure(channel.send(replace(sample, attempt=2)))
    assert (error.retriable, error.status_code) == (True, 500)


async def test_every_request_carries_auth_and_json_headers_and_no_secret_is_logged(
    servicenow: Receiver, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    channel = make(servicenow.url, LOCAL, client)
    handoff = view()
    servicenow.then(200, NOTHING)
    servicenow.then(201, {"result": incident()})
    created = await channel.send(delivery(EventType.created, handoff, "servicenow"))
    follow_up = replace(
        delivery(EventType.resolved, handoff, "servicenow"), external_refs=created.external_refs
    )
    servicenow.then(200, {"result": incident(state="6")})
    await channel.send(follow_up)
    assert servicenow.refused == [] and len(servicenow.requests) == 3
    for sent in servicenow.requests:
        assert sent.headers["accept"] == "application/json"
    assert PASSWORD not in caplog.text and CREDENTIALS not in caplog.text
    assert "INC0010001" in caplog.text


async def test_missing_settings_fail_for_good_without_a_request(
    servicenow: Receiver, client: httpx.AsyncClient
) -> None:
    channel = ServiceNowChannel(
        ServiceNowConfig(instance_url=servicenow.url, username=USERNAME), client=client, guard=LOCAL
    )
    error = await failure(channel.send(delivery(EventType.created, view(), "servicenow")))
    assert not error.retriable and "password" in str(error)
    assert servicenow.requests == [] and servicenow.refused == []
