"""ServiceNow: one incident per handoff through the Table API, kept up to date by work notes.

* ``created``: ``POST /api/now/table/incident`` with ``correlation_id`` = the handoff id and
  ``correlation_display`` = ``Nectar``. ServiceNow has no idempotency header, so every create
  first asks for an incident with that correlation_id (``sysparm_query``) and reuses it: a
  retried or twice-run create makes one incident. The incident's ``sys_id`` and ``number``
  go to the handoff's ``external_refs``.
* ``assigned``: state 2 (In Progress) and a work note. ``escalated``: the new urgency and
  impact and a work note. ``resolved``: state 6 (Resolved), close code
  ``Solved (Permanently)`` and the resolution notes as close notes (both are mandatory to
  resolve an incident). ``cancelled``: state 8 (Canceled) and a work note.
* A follow-up without a sys_id in ``external_refs`` looks the incident up by correlation_id;
  when there is none yet, the create may still be in flight, so the follow-up is retried.

Urgency and impact (1 = high ... 3 = low) are chosen so ServiceNow's default priority matrix
gives: critical -> 1/1 (P1 Critical), high -> 1/2 (P2 High), medium -> 2/2 (P3 Moderate),
low -> 3/2 (P4 Low). Impact stays 2 below critical: a handoff is one customer waiting.

A test notification creates an incident at urgency 3 / impact 3 with correlation_id
``nectar-test-<delivery id>``, which proves the credentials and the right to create
incidents.

Auth is HTTP Basic with ``username``/``password``; the password never appears in an error
or a log line. ServiceNow answers 201 ``{"result": {...}}`` to a create and 200 to GET and
PATCH; 401 is a bad login, 403 an ACL or data policy refusal (both permanent).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from nectar.config import ServiceNowConfig
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
from nectar.notifications.channels.wording import TEST_TITLE, clip, headline, require_handoff

log = logging.getLogger(__name__)

TABLE = "/api/now/table/incident"
SYS_ID = "servicenow_sys_id"
NUMBER = "servicenow_number"
CORRELATION_DISPLAY = "Nectar"
TEST_CORRELATION_PREFIX = "nectar-test-"
FIELDS = "sys_id,number,state"
SHORT_DESCRIPTION_CHARS = 160
DESCRIPTION_CHARS = 4000
NOTES_CHARS = 4000
# (urgency, impact)
URGENCY_IMPACT = {
    "critical": ("1", "1"),
    "high": ("1", "2"),
    "medium": ("2", "2"),
    "low": ("3", "2"),
}
IN_PROGRESS = "2"
RESOLVED = "6"
CANCELED = "8"
CLOSE_CODE = "Solved (Permanently)"
WHAT = "ServiceNow"


def urgency_impact(urgency: str) -> tuple[str, str]:
    return URGENCY_IMPACT.get(urgency, URGENCY_IMPACT["medium"])


def new_incident(handoff: HandoffView, assignment_group: str | None) -> dict[str, Any]:
    urgency, impact = urgency_impact(handoff.urgency)
    record = {
        "short_description": tickets.subject(handoff, SHORT_DESCRIPTION_CHARS),
        "description": clip(tickets.description(handoff), DESCRIPTION_CHARS),
        "urgency": urgency,
        "impact": impact,
        "correlation_id": handoff.id,
        "correlation_display": CORRELATION_DISPLAY,
    }
    if assignment_group:
        record["assignment_group"] = assignment_group
    return record


def self_test_incident(delivery: Delivery, assignment_group: str | None) -> dict[str, Any]:
    record = {
        "short_description": TEST_TITLE,
        "description": tickets.self_test_description(delivery),
        "urgency": "3",
        "impact": "3",
        "correlation_id": f"{TEST_CORRELATION_PREFIX}{delivery.id}",
        "correlation_display": CORRELATION_DISPLAY,
    }
    if assignment_group:
        record["assignment_group"] = assignment_group
    return record


def changes(
    delivery: Delivery, handoff: HandoffView, close_code: str = CLOSE_CODE
) -> dict[str, Any]:
    """The PATCH body of a follow-up."""
    note = clip(tickets.note(delivery, handoff), NOTES_CHARS)
    match delivery.event:
        case EventType.assigned:
            return {"state": IN_PROGRESS, "work_notes": note}
        case EventType.escalated:
            urgency, impact = urgency_impact(handoff.urgency)
            return {"urgency": urgency, "impact": impact, "work_notes": note}
        case EventType.resolved:
            notes = (handoff.resolution_notes or "").strip() or headline(delivery) + "."
            return {
                "state": RESOLVED,
                "close_code": close_code,
                "close_notes": clip(notes, NOTES_CHARS),
                "work_notes": note,
            }
        case EventType.cancelled:
            return {"state": CANCELED, "work_notes": note}
    raise DeliveryFailed(f"ServiceNow has no update for {delivery.event.value}", retriable=False)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class ServiceNowChannel(HttpChannel[ServiceNowConfig]):
    name: ClassVar[str] = "servicenow"

    # --- plumbing -------------------------------------------------------------------------

    def _check_config(self) -> None:
        password = self._config.password.get_secret_value() if self._config.password else ""
        missing = [
            name
            for name, value in (
                ("instance_url", self._config.instance_url),
                ("username", self._config.username),
                ("password", password),
            )
            if not value
        ]
        if missing:
            raise DeliveryFailed(
                f"ServiceNow is not configured: missing {', '.join(missing)}", retriable=False
            )

    async def _call(
        self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None
    ) -> tuple[httpx.Response, SendResult]:
        password = self._config.password.get_secret_value() if self._config.password else ""
        base = (self._config.instance_url or "").strip().rstrip("/")
        try:
            response = await request(
                self._client,
                self._guard,
                method,
                f"{base}{path}",
                WHAT,
                json=json,
                params={"sysparm_fields": FIELDS, **(params or {})},
                headers={
                    "Accept": "application/json",
                    **basic_auth(self._config.username or "", password),
                },
            )
        except httpx.InvalidURL:
            raise DeliveryFailed(
                "ServiceNow instance_url is not a valid URL", retriable=False
            ) from None
        return response, check_response(response, WHAT)

    @staticmethod
    def _result(response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            return None
        return body.get("result") if isinstance(body, dict) else None

    @staticmethod
    def _refs(record: dict[str, Any]) -> dict[str, Any]:
        refs = {SYS_ID: record["sys_id"]}
        number = _text(record.get("number"))
        if number:
            refs[NUMBER] = number
        return refs

    # --- the records ----------------------------------------------------------------------

    async def _find(self, correlation_id: str) -> dict[str, Any] | None:
        """The incident with this correlation_id, if any."""
        response, _ = await self._call(
            "GET",
            TABLE,
            params={"sysparm_query": f"correlation_id={correlation_id}", "sysparm_limit": "1"},
        )
        found = self._result(response)
        record = found[0] if isinstance(found, list) and found else None
        if isinstance(record, dict) and _text(record.get("sys_id")):
            return record
        return None

    async def _create(self, delivery: Delivery, record: dict[str, Any]) -> SendResult:
        correlation_id = record["correlation_id"]
        existing = await self._find(correlation_id)
        if existing is not None:
            log.info(
                "ServiceNow incident %s already exists for %s",
                existing.get("number"),
                correlation_id,
            )
            return SendResult(
                status_code=200,
                external_refs=self._refs(existing) if delivery.handoff is not None else {},
                detail=f"ServiceNow incident {existing.get('number') or existing['sys_id']} "
                "(created earlier)",
            )
        response, result = await self._call("POST", TABLE, json=record)
        created = self._result(response)
        if not isinstance(created, dict) or not _text(created.get("sys_id")):
            # The next attempt finds the incident by correlation_id if it was made after all.
            raise DeliveryFailed(
                f"ServiceNow answered {response.status_code} without a sys_id",
                retriable=True,
                status_code=response.status_code,
            )
        log.info("ServiceNow incident %s for %s", created.get("number"), correlation_id)
        return SendResult(
            status_code=result.status_code,
            external_refs=self._refs(created) if delivery.handoff is not None else {},
            detail=f"ServiceNow incident {created.get('number') or created['sys_id']}",
        )

    async def _update(self, delivery: Delivery, handoff: HandoffView) -> SendResult:
        body = changes(delivery, handoff, self._config.close_code)
        refs = {
            key: delivery.external_refs[key]
            for key in (SYS_ID, NUMBER)
            if _text(delivery.external_refs.get(key))
        }
        if SYS_ID not in refs:
            existing = await self._find(handoff.id)
            if existing is None:
                raise DeliveryFailed(
                    f"no ServiceNow incident for handoff {handoff.id} yet (its create may still "
                    "be in flight)",
                    retriable=True,
                )
            refs = self._refs(existing)
        _, result = await self._call("PATCH", f"{TABLE}/{quote(refs[SYS_ID], safe='')}", json=body)
        return SendResult(
            status_code=result.status_code,
            external_refs=refs,
            detail=f"ServiceNow incident {refs.get(NUMBER) or refs[SYS_ID]} updated "
            f"({delivery.event.value})",
        )

    # --- the interface --------------------------------------------------------------------

    async def send(self, delivery: Delivery) -> SendResult:
        self._check_config()
        group = self._config.assignment_group
        if delivery.event is EventType.test:
            return await self._create(delivery, self_test_incident(delivery, group))
        handoff = require_handoff(delivery)
        if delivery.event is EventType.created:
            if _text(delivery.external_refs.get(SYS_ID)):
                refs = {k: v for k, v in delivery.external_refs.items() if k in (SYS_ID, NUMBER)}
                return SendResult(external_refs=refs, detail="ServiceNow incident exists")
            return await self._create(delivery, new_incident(handoff, group))
        return await self._update(delivery, handoff)
