"""Zendesk: one ticket per handoff, kept up to date by internal notes.

* ``created``: ``POST /api/v2/tickets.json`` with an internal (``public: false``) comment
  holding the summary, the recent conversation and the link back to Nectar; ``external_id``
  is the handoff id, tags ``nectar`` and the reason. The ``Idempotency-Key`` header is the
  delivery's key (stable across retries): Zendesk answers a repeated create with the ticket
  it already made, for two hours. Beyond that, a retry first looks the ticket up by
  ``external_id``, so a create whose answer was lost is never repeated. The ticket id goes
  to the handoff's ``external_refs`` as ``zendesk_ticket_id``.
* ``assigned``: an internal note (who took it). ``escalated``: a note and the new priority.
* ``resolved``: status ``solved`` with the resolution notes as an internal note.
* ``cancelled``: also ``solved`` (the API cannot close a ticket: Zendesk closes solved
  tickets itself after a few days), with a note saying why and the tag ``nectar_cancelled``
  so the two endings can be told apart in views and reports.

Zendesk refuses to solve a ticket without an assignee, so before solving, an unassigned
ticket is given to the API user (``email``). A ticket already closed is left alone.

A follow-up without a ticket id in ``external_refs`` looks the ticket up by ``external_id``;
when there is none yet the create may still be in flight, so the follow-up is retried.

Priority: our urgency maps to Zendesk's (low -> low, medium -> normal, high -> high,
critical -> urgent) and ``ticket_priority`` is the floor: with the default ``normal``, a
low-urgency handoff still gets a normal ticket; set ``low`` to keep Zendesk's full range.

A test notification creates a low-priority ticket tagged ``nectar_test``: it proves the
credentials, the permission to create tickets and the network path.

Auth is HTTP Basic with ``{email}/token:{api_token}``; the token never appears in an error
or a log line.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from nectar.config import ZendeskConfig
from nectar.notifications.channels import tickets
from nectar.notifications.channels.base import (
    Delivery,
    DeliveryFailed,
    EventType,
    HandoffView,
    SendResult,
)
from nectar.notifications.channels.http import (
    HttpChannel,
    basic_auth,
    check_response,
    request,
)
from nectar.notifications.channels.wording import TEST_TITLE, require_handoff

log = logging.getLogger(__name__)

REF_KEY = "zendesk_ticket_id"
PRIORITIES = ("low", "normal", "high", "urgent")
URGENCY_PRIORITY = {"low": "low", "medium": "normal", "high": "high", "critical": "urgent"}
SUBJECT_CHARS = 150
CANCELLED_TAG = "nectar_cancelled"
TEST_TAG = "nectar_test"
TEST_EXTERNAL_PREFIX = "nectar-test-"
WHAT = "Zendesk"


def priority(urgency: str, floor: str) -> str:
    """Zendesk's priority for our urgency, never below ``floor`` (``ticket_priority``)."""
    mapped = URGENCY_PRIORITY.get(urgency, floor)
    return max(mapped, floor, key=PRIORITIES.index)


def tag(value: str) -> str:
    """Zendesk tags are lowercase words: spaces and punctuation become underscores."""
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in value.strip().lower())
    return cleaned or "unknown"


def _internal(body: str) -> dict[str, Any]:
    return {"body": body, "public": False}


def new_ticket(handoff: HandoffView, floor: str) -> dict[str, Any]:
    return {
        "ticket": {
            "subject": tickets.subject(handoff, SUBJECT_CHARS),
            "comment": _internal(tickets.description(handoff)),
            "priority": priority(handoff.urgency, floor),
            "tags": ["nectar", tag(handoff.reason)],
            "external_id": handoff.id,
        }
    }


def self_test_ticket(delivery: Delivery) -> dict[str, Any]:
    return {
        "ticket": {
            "subject": TEST_TITLE,
            "comment": _internal(tickets.self_test_description(delivery)),
            "priority": "low",
            "tags": ["nectar", TEST_TAG],
            "external_id": f"{TEST_EXTERNAL_PREFIX}{delivery.id}",
        }
    }


def _ticket_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


class ZendeskChannel(HttpChannel[ZendeskConfig]):
    name: ClassVar[str] = "zendesk"

    # --- plumbing -------------------------------------------------------------------------

    def _base(self) -> str:
        endpoint = (self._config.api_endpoint or "").strip().rstrip("/")
        # Accept the API root as well as the account URL.
        return endpoint.removesuffix("/api/v2")

    def _auth(self) -> dict[str, str]:
        token = self._config.api_key.get_secret_value() if self._config.api_key else ""
        return basic_auth(f"{self._config.email}/token", token)

    def _check_config(self) -> None:
        missing = [
            name
            for name, value in (
                ("api_endpoint", self._config.api_endpoint),
                ("email", self._config.email),
                (
                    "api_key",
                    self._config.api_key.get_secret_value() if self._config.api_key else "",
                ),
            )
            if not value
        ]
        if missing:
            raise DeliveryFailed(
                f"Zendesk is not configured: missing {', '.join(missing)}", retriable=False
            )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[httpx.Response, SendResult]:
        try:
            response = await request(
                self._client,
                self._guard,
                method,
                f"{self._base()}{path}",
                WHAT,
                json=json,
                params=params,
                headers={**(headers or {}), **self._auth()},
            )
        except httpx.InvalidURL:
            raise DeliveryFailed(
                "Zendesk api_endpoint is not a valid URL", retriable=False
            ) from None
        return response, check_response(response, WHAT)

    @staticmethod
    def _body(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    # --- the records ----------------------------------------------------------------------

    async def _find(self, external_id: str) -> int | None:
        """The oldest ticket with this external_id, if any."""
        response, _ = await self._call(
            "GET", "/api/v2/tickets.json", params={"external_id": external_id}
        )
        found = self._body(response).get("tickets")
        ids = [
            ticket_id
            for ticket in (found if isinstance(found, list) else [])
            if isinstance(ticket, dict) and (ticket_id := _ticket_id(ticket.get("id"))) is not None
        ]
        return min(ids) if ids else None

    async def _create(self, delivery: Delivery, payload: dict[str, Any]) -> SendResult:
        external_id = payload["ticket"]["external_id"]
        if delivery.attempt > 1:
            existing = await self._find(external_id)
            if existing is not None:
                log.info("Zendesk ticket %s already exists for %s", existing, external_id)
                return SendResult(
                    status_code=200,
                    external_refs=self._refs(delivery, existing),
                    detail=f"Zendesk ticket {existing} (created by an earlier attempt)",
                )
        response, result = await self._call(
            "POST",
            "/api/v2/tickets.json",
            json=payload,
            headers={"Idempotency-Key": delivery.idempotency_key},
        )
        ticket = self._body(response).get("ticket")
        ticket_id = _ticket_id(ticket.get("id")) if isinstance(ticket, dict) else None
        if ticket_id is None:
            # The next attempt finds the ticket by external_id if it was made after all.
            raise DeliveryFailed(
                f"Zendesk answered {response.status_code} without a ticket id",
                retriable=True,
                status_code=response.status_code,
            )
        # "hit": Zendesk recognised the Idempotency-Key and answered with the earlier ticket.
        lookup = response.headers.get("x-idempotency-lookup", "miss")
        log.info("Zendesk ticket %s for %s (idempotency %s)", ticket_id, external_id, lookup)
        return SendResult(
            status_code=result.status_code,
            external_refs=self._refs(delivery, ticket_id),
            detail=f"Zendesk ticket {ticket_id}",
        )

    @staticmethod
    def _refs(delivery: Delivery, ticket_id: int) -> dict[str, Any]:
        return {REF_KEY: ticket_id} if delivery.handoff is not None else {}

    async def _existing_ticket(self, delivery: Delivery, handoff: HandoffView) -> int:
        ticket_id = _ticket_id(delivery.external_refs.get(REF_KEY))
        if ticket_id is not None:
            return ticket_id
        ticket_id = await self._find(handoff.id)
        if ticket_id is None:
            raise DeliveryFailed(
                f"no Zendesk ticket for handoff {handoff.id} yet (its create may still be "
                "in flight)",
                retriable=True,
            )
        return ticket_id

    async def _update(self, delivery: Delivery, handoff: HandoffView) -> SendResult:
        ticket_id = await self._existing_ticket(delivery, handoff)
        path = f"/api/v2/tickets/{quote(str(ticket_id))}.json"
        changes: dict[str, Any] = {"comment": _internal(tickets.note(delivery, handoff))}
        if delivery.event is EventType.escalated:
            changes["priority"] = priority(handoff.urgency, self._config.ticket_priority)
        elif delivery.event in (EventType.resolved, EventType.cancelled):
            current = self._body((await self._call("GET", path))[0]).get("ticket")
            current = current if isinstance(current, dict) else {}
            if current.get("status") == "closed":
                return SendResult(
                    status_code=200,
                    external_refs={REF_KEY: ticket_id},
                    detail=f"Zendesk ticket {ticket_id} is already closed",
                )
            changes["status"] = "solved"
            if current.get("assignee_id") is None:
                changes["assignee_email"] = self._config.email
            if delivery.event is EventType.cancelled:
                changes["additional_tags"] = [CANCELLED_TAG]
        _, result = await self._call("PUT", path, json={"ticket": changes})
        return SendResult(
            status_code=result.status_code,
            external_refs={REF_KEY: ticket_id},
            detail=f"Zendesk ticket {ticket_id} updated ({delivery.event.value})",
        )

    # --- the interface --------------------------------------------------------------------

    async def send(self, delivery: Delivery) -> SendResult:
        self._check_config()
        if delivery.event is EventType.test:
            return await self._create(delivery, self_test_ticket(delivery))
        handoff = require_handoff(delivery)
        if delivery.event is EventType.created:
            known = _ticket_id(delivery.external_refs.get(REF_KEY))
            if known is not None:
                return SendResult(
                    external_refs={REF_KEY: known}, detail=f"Zendesk ticket {known} exists"
                )
            return await self._create(delivery, new_ticket(handoff, self._config.ticket_priority))
        return await self._update(delivery, handoff)
