"""Who may call what: every endpoint of the app against every kind of caller.

The matrix below must name every endpoint the app serves; a new endpoint without a row makes
``test_the_matrix_names_every_endpoint`` fail, so its permissions get decided and tested. A row
whose path has a new ``{parameter}`` also needs a maker in ``World._make``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from nectar.app import create_app
from nectar.db import sessionmaker
from tests.conftest import TEST_PASSWORD, Account, make_settings
from tests.helpers import assert_error, expire_tokens, issue_token, open_stream

# The callers, in the column order of MATRIX. "expired" and "deactivated" are admins whose
# token expired or whose account was deactivated: neither state may be outweighed by the role.
# "member" owns the bot, honey jar and document the id endpoints are called on; "stranger" is
# another member. "bot_key" is the member's bot's API key sent as a bearer token.
CALLERS = ("anonymous", "expired", "deactivated", "admin", "member", "stranger", "agent", "bot_key")

_BOTS = "/api/nectar-bots"
_JARS = "/api/honey-jars"
_DOC = "/api/honey-jars/{jar_id}/documents/{doc_id}"
_HANDOFF = "/api/nectar-bots/handoffs/{handoff_id}"
_TEMPLATES = "/api/nectar-bots/response-templates"
_INBOX = "/api/notifications"
_DELIVERIES = "/api/notifications/deliveries"

#                                                 anon  exp deact admin memb strgr agent key
MATRIX: dict[tuple[str, str], tuple[int, ...]] = {
    # No authentication at all.
    ("GET", "/healthz"):                           (200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/readyz"):                            (200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/metrics"):                           (200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/docs"):                              (200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/docs/oauth2-redirect"):              (200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/redoc"):                             (200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", "/openapi.json"):                      (200, 200, 200, 200, 200, 200, 200, 200),
    ("POST", "/api/auth/token"):                   (200, 200, 200, 200, 200, 200, 200, 200),
    # Any signed-in user.
    ("POST", "/api/auth/logout"):                  (401, 401, 401, 204, 204, 204, 204, 401),
    ("GET", "/api/auth/me"):                       (401, 401, 401, 200, 200, 200, 200, 401),
    # User management is for admins; others may read and edit only themselves, and the
    # subject here is someone else, so for them it does not exist.
    ("GET", "/api/users"):                         (401, 401, 401, 200, 403, 403, 403, 401),
    ("POST", "/api/users"):                        (401, 401, 401, 201, 403, 403, 403, 401),
    ("GET", "/api/users/{user_id}"):               (401, 401, 401, 200, 404, 404, 404, 401),
    ("PATCH", "/api/users/{user_id}"):             (401, 401, 401, 200, 404, 404, 404, 401),
    ("DELETE", "/api/users/{user_id}"):            (401, 401, 401, 204, 403, 403, 403, 401),
    # Bots: admins and members; a member's bot does not exist for another member; agents
    # handle handoffs and cannot manage bots. A bot's key manages nothing.
    ("POST", _BOTS):                               (401, 401, 401, 201, 201, 201, 403, 401),
    ("GET", _BOTS):                                (401, 401, 401, 200, 200, 200, 403, 401),
    ("GET", _BOTS + "/{bot_id}"):                  (401, 401, 401, 200, 200, 404, 403, 401),
    ("PUT", _BOTS + "/{bot_id}"):                  (401, 401, 401, 200, 200, 404, 403, 401),
    ("DELETE", _BOTS + "/{bot_id}"):               (401, 401, 401, 204, 204, 404, 403, 401),
    ("POST", _BOTS + "/{bot_id}/regenerate-api-key"): (
                                                    401, 401, 401, 200, 200, 404, 403, 401),
    # Chat: only the bot's own key; a user's access token is not a bot key, whatever the role.
    ("POST", _BOTS + "/{bot_id}/chat"):            (401, 401, 401, 401, 401, 401, 401, 200),
    ("GET", _BOTS + "/{bot_id}/conversations/{conversation_id}/messages"): (
                                                    401, 401, 401, 401, 401, 401, 401, 200),
    ("GET", _BOTS + "/{bot_id}/conversations/{conversation_id}/stream"): (
                                                    401, 401, 401, 401, 401, 401, 401, 200),
    # Public bots: no key, whoever calls.
    ("GET", _BOTS + "/public/{slug}"):             (200, 200, 200, 200, 200, 200, 200, 200),
    ("POST", _BOTS + "/public/{slug}/chat"):       (200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", _BOTS + "/public/{slug}/conversations/{conversation_id}/messages"): (
                                                    200, 200, 200, 200, 200, 200, 200, 200),
    ("GET", _BOTS + "/public/{slug}/conversations/{conversation_id}/stream"): (
                                                    200, 200, 200, 200, 200, 200, 200, 200),
    # Honey jars: admins and members manage (members their own); agents may read every jar.
    ("POST", _JARS):                               (401, 401, 401, 201, 201, 201, 403, 401),
    ("GET", _JARS):                                (401, 401, 401, 200, 200, 200, 200, 401),
    ("GET", _JARS + "/{jar_id}"):                  (401, 401, 401, 200, 200, 404, 200, 401),
    ("PUT", _JARS + "/{jar_id}"):                  (401, 401, 401, 200, 200, 404, 403, 401),
    ("DELETE", _JARS + "/{jar_id}"):               (401, 401, 401, 204, 204, 404, 403, 401),
    ("GET", _JARS + "/{jar_id}/search"):           (401, 401, 401, 200, 200, 404, 200, 401),
    ("POST", _JARS + "/{jar_id}/documents"):       (401, 401, 401, 201, 201, 404, 403, 401),
    ("GET", _JARS + "/{jar_id}/documents"):        (401, 401, 401, 200, 200, 404, 200, 401),
    ("GET", _DOC):                                 (401, 401, 401, 200, 200, 404, 200, 401),
    ("PUT", _DOC):                                 (401, 401, 401, 200, 200, 404, 403, 401),
    ("DELETE", _DOC):                              (401, 401, 401, 204, 204, 404, 403, 401),
    # Handoffs (a pending one, on the member's bot): agents and admins work every handoff;
    # a member may follow the handoffs of their own bots but not work them.
    ("GET", _BOTS + "/handoffs"):                  (401, 401, 401, 200, 200, 200, 200, 401),
    ("GET", _HANDOFF):                             (401, 401, 401, 200, 200, 404, 200, 401),
    ("GET", _HANDOFF + "/messages"):               (401, 401, 401, 200, 200, 404, 200, 401),
    ("GET", _HANDOFF + "/stream"):                 (401, 401, 401, 200, 200, 404, 200, 401),
    ("POST", _HANDOFF + "/assign"):                (401, 401, 401, 200, 403, 403, 200, 401),
    ("POST", _HANDOFF + "/messages"):              (401, 401, 401, 200, 403, 403, 200, 401),
    ("POST", _HANDOFF + "/resolve"):               (401, 401, 401, 200, 403, 403, 200, 401),
    ("POST", _HANDOFF + "/cancel"):                (401, 401, 401, 200, 403, 403, 200, 401),
    ("POST", _BOTS + "/conversations/{conversation_id}/handoff"): (
                                                    401, 401, 401, 201, 403, 403, 201, 401),
    # A bot's handoff settings belong to whoever manages the bot.
    ("GET", _BOTS + "/{bot_id}/handoff"):          (401, 401, 401, 200, 200, 404, 403, 401),
    ("POST", _BOTS + "/{bot_id}/handoff"):         (401, 401, 401, 200, 200, 404, 403, 401),
    # Response templates are the agents' (and admins') tools.
    ("GET", _TEMPLATES):                           (401, 401, 401, 200, 403, 403, 200, 401),
    ("POST", _TEMPLATES):                          (401, 401, 401, 201, 403, 403, 201, 401),
    ("GET", _TEMPLATES + "/{template_id}"):        (401, 401, 401, 200, 403, 403, 200, 401),
    ("PUT", _TEMPLATES + "/{template_id}"):        (401, 401, 401, 200, 403, 403, 200, 401),
    ("DELETE", _TEMPLATES + "/{template_id}"):     (401, 401, 401, 204, 403, 403, 204, 401),
    # Everyone signed in has an inbox (the notification here is the member's, so it does not
    # exist for anyone else); the delivery log and test sends are for admins.
    ("GET", _INBOX):                               (401, 401, 401, 200, 200, 200, 200, 401),
    ("GET", _INBOX + "/stream"):                   (401, 401, 401, 200, 200, 200, 200, 401),
    ("POST", _INBOX + "/read-all"):                (401, 401, 401, 200, 200, 200, 200, 401),
    ("POST", _INBOX + "/{notification_id}/read"):  (401, 401, 401, 404, 200, 404, 404, 401),
    ("GET", _DELIVERIES):                          (401, 401, 401, 200, 403, 403, 403, 401),
    ("GET", _DELIVERIES + "/{delivery_id}"):       (401, 401, 401, 200, 403, 403, 403, 401),
    ("POST", _DELIVERIES + "/{delivery_id}/retry"): (
                                                    401, 401, 401, 200, 403, 403, 403, 401),
    ("POST", "/api/messaging/test-notification"):  (401, 401, 401, 202, 403, 403, 403, 401),
}  # fmt: skip

# Endpoints the matrix says need no authentication; stated twice on purpose, so that opening
# an endpoint to everyone takes two deliberate edits.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("GET", "/openapi.json"),
    ("POST", "/api/auth/token"),
    ("GET", _BOTS + "/public/{slug}"),
    ("POST", _BOTS + "/public/{slug}/chat"),
    ("GET", _BOTS + "/public/{slug}/conversations/{conversation_id}/messages"),
    ("GET", _BOTS + "/public/{slug}/conversations/{conversation_id}/stream"),
}

# A valid body (or query) for each call that needs one, so only the caller decides the
# outcome. ``{n}`` becomes a number unique to the call.
REQUESTS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/users"): {"json": {"email": "new-{n}@example.com", "password": "x" * 12}},
    ("PATCH", "/api/users/{user_id}"): {"json": {"name": "Renamed {n}"}},
    ("POST", _BOTS): {"json": {"name": "Bot {n}"}},
    ("PUT", _BOTS + "/{bot_id}"): {"json": {"name": "Renamed {n}"}},
    ("POST", _BOTS + "/{bot_id}/chat"): {"json": {"message": "hello"}},
    ("POST", _BOTS + "/public/{slug}/chat"): {"json": {"message": "hello"}},
    ("POST", _JARS): {"json": {"name": "Jar {n}"}},
    ("PUT", _JARS + "/{jar_id}"): {"json": {"name": "Renamed {n}"}},
    ("GET", _JARS + "/{jar_id}/search"): {"params": {"q": "refunds"}},
    ("POST", _JARS + "/{jar_id}/documents"): {"json": {"title": "Doc {n}", "content": "Refunds."}},
    ("PUT", _DOC): {"json": {"title": "Renamed {n}"}},
    ("POST", _HANDOFF + "/messages"): {"json": {"content": "Hello, I am here to help."}},
    ("POST", _BOTS + "/{bot_id}/handoff"): {"json": {"enabled": True}},
    ("POST", _TEMPLATES): {"json": {"name": "Template {n}", "body": "Hi {user_name}"}},
    ("PUT", _TEMPLATES + "/{template_id}"): {"json": {"name": "Renamed {n}"}},
    # In-app only: a test must not reach for a mail server or the internet.
    ("POST", "/api/messaging/test-notification"): {
        "json": {"channels": ["in_app"], "wait_seconds": 0}
    },
}

# Rows whose path parameter must be a resource other than the one named like it.
ROW_PARAMS: dict[tuple[str, str], dict[str, str]] = {
    # Escalating needs a conversation without an open handoff.
    ("POST", _BOTS + "/conversations/{conversation_id}/handoff"): {
        "conversation_id": "calm_conversation_id"
    },
}

# Successful calls after which every caller and resource is still usable as before.
HARMLESS = {
    ("POST", "/api/auth/token"),
    ("POST", "/api/users"),
    ("PATCH", "/api/users/{user_id}"),
    ("POST", _BOTS),
    ("PUT", _BOTS + "/{bot_id}"),
    ("POST", _BOTS + "/{bot_id}/chat"),
    ("POST", _BOTS + "/public/{slug}/chat"),
    ("POST", _JARS),
    ("PUT", _JARS + "/{jar_id}"),
    ("POST", _JARS + "/{jar_id}/documents"),
    ("PUT", _DOC),
    ("POST", _BOTS + "/{bot_id}/handoff"),
    ("POST", _TEMPLATES),
    ("PUT", _TEMPLATES + "/{template_id}"),
    ("POST", _INBOX + "/read-all"),
    ("POST", _INBOX + "/{notification_id}/read"),
    ("POST", "/api/messaging/test-notification"),
}

# What each resource is made from: dropping one drops what depends on it.
DEPENDS_ON = {
    "slug": "bot_id",
    "bot_key": "bot_id",
    "conversation_id": "bot_id",
    "calm_conversation_id": "bot_id",
    "handoff_id": "bot_id",
    "doc_id": "jar_id",
    "subject_email": "user_id",
}


class World:
    """The callers, and resources made on first use and made again after a call used them up."""

    def __init__(self, client: httpx.AsyncClient, accounts: Any, db: Any) -> None:
        self.client, self.accounts, self.db = client, accounts, db
        self.users: dict[str, Account] = {}
        self.tokens: dict[str, str] = {}
        self.values: dict[str, str] = {}
        self.serial = 0

    async def setup(self) -> None:
        for caller, role, active in [
            ("expired", "admin", True),
            ("deactivated", "admin", False),
            ("admin", "admin", True),
            ("member", "member", True),
            ("stranger", "member", True),
            ("agent", "agent", True),
        ]:
            self.users[caller] = await self.accounts(role, active=active)
            self.tokens[caller] = self.users[caller].token
        await expire_tokens(self.db, self.users["expired"].id)

    async def headers(self, caller: str) -> dict[str, str]:
        if caller == "anonymous":
            return {}
        token = await self.get("bot_key") if caller == "bot_key" else self.tokens[caller]
        return {"Authorization": f"Bearer {token}"}

    async def signed_out(self, caller: str) -> None:
        self.tokens[caller] = await issue_token(self.db, self.users[caller].id)

    def drop(self, name: str) -> None:
        self.values.pop(name, None)
        for dependent, base in DEPENDS_ON.items():
            if base == name:
                self.drop(dependent)

    async def get(self, name: str) -> str:
        if name not in self.values:
            await self._make(name)
        return self.values[name]

    async def _post(self, url: str, body: dict[str, Any], caller: str = "member") -> Any:
        r = await self.client.post(
            url, json=body, headers={"Authorization": f"Bearer {self.tokens[caller]}"}
        )
        assert r.status_code in (200, 201), r.text
        return r.json()

    async def _insert(self, row: Any) -> str:
        """A row the API has no way to create on demand."""
        async with sessionmaker(self.db)() as session:
            session.add(row)
            await session.commit()
            return str(row.id)

    async def _make(self, name: str) -> None:
        v = self.values
        if name in ("bot_id", "slug", "bot_key"):
            bot = (await self._post(_BOTS, {"name": "Owned", "is_public": True}))["bot"]
            v.update(bot_id=bot["id"], slug=bot["slug"], bot_key=bot["api_key"])
        elif name in ("conversation_id", "calm_conversation_id"):
            url = f"{_BOTS}/public/{await self.get('slug')}/chat"
            v[name] = (await self._post(url, {"message": "hello"}))["conversation_id"]
        elif name == "handoff_id":
            # On a conversation of its own: a conversation has at most one open handoff.
            url = f"{_BOTS}/public/{await self.get('slug')}/chat"
            conversation_id = (await self._post(url, {"message": "hello"}))["conversation_id"]
            url = f"{_BOTS}/conversations/{conversation_id}/handoff"
            v[name] = (await self._post(url, {}, caller="admin"))["handoff"]["id"]
        elif name == "jar_id":
            v[name] = (await self._post(_JARS, {"name": "Owned jar"}))["honey_jar"]["id"]
        elif name == "doc_id":
            url = f"{_JARS}/{await self.get('jar_id')}/documents"
            body = {"title": "Refunds", "content": "Refunds."}
            v[name] = (await self._post(url, body))["document"]["id"]
        elif name in ("user_id", "subject_email"):
            subject = await self.accounts("member")
            v.update(user_id=str(subject.id), subject_email=subject.email)
        elif name == "template_id":
            body = {"name": "Greeting", "body": "Hello {user_name}"}
            v[name] = (await self._post(_TEMPLATES, body, caller="admin"))["template"]["id"]
        elif name == "notification_id":
            from nectar.notifications.models import Notification

            member = self.users["member"].id
            v[name] = await self._insert(Notification(user_id=member, kind="test", title="Hi"))
        elif name == "delivery_id":
            from nectar.notifications.models import Delivery

            member = self.users["member"].id
            dead = Delivery(
                event="test",
                channel="in_app",
                recipient=str(member),
                recipient_user_id=member,
                status="dead",
                attempts=6,
                last_error="gave up",
            )
            v[name] = await self._insert(dead)
        else:
            raise AssertionError(f"World cannot make {{{name}}}: add a maker to World._make")

    async def request(self, method: str, path: str) -> dict[str, Any]:
        """The URL and a valid body for this row."""
        self.serial += 1
        mapping = ROW_PARAMS.get((method, path), {})
        names = re.findall(r"{(\w+)}", path)
        values = {name: await self.get(mapping.get(name, name)) for name in names}
        kwargs = _fill(REQUESTS.get((method, path), {}), self.serial)
        if path == "/api/auth/token":
            kwargs = {
                "data": {"username": await self.get("subject_email"), "password": TEST_PASSWORD}
            }
        return {"url": path.format(**values), **kwargs}

    async def used_up(self, method: str, path: str, caller: str) -> None:
        """A successful call may have consumed what it acted on."""
        if (method, path) in HARMLESS:
            return
        if path == "/api/auth/logout":
            await self.signed_out(caller)
            return
        mapping = ROW_PARAMS.get((method, path), {})
        names = [mapping.get(n, n) for n in re.findall(r"{(\w+)}", path)]
        for name in names or list(self.values):
            self.drop(name)


def _fill(template: Any, n: int) -> Any:
    if isinstance(template, str):
        return template.replace("{n}", str(n))
    if isinstance(template, dict):
        return {k: _fill(v, n) for k, v in template.items()}
    return template


def app_endpoints(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) for everything the app serves; mounts and websockets appear as '*'."""
    try:  # FastAPI >= 0.16x keeps included routers as wrappers
        from fastapi.routing import iter_route_contexts

        routes: list[Any] = list(iter_route_contexts(app.routes))
    except ImportError:  # pragma: no cover - older FastAPI lists routes flat
        routes = list(app.routes)
    endpoints = set()
    for route in routes:
        methods = getattr(route, "methods", None)
        if not methods:
            endpoints.add(("*", str(route.path)))
            continue
        endpoints.update((m, str(route.path)) for m in methods if m != "HEAD")
    return endpoints


async def test_the_matrix_names_every_endpoint() -> None:
    app = create_app(make_settings("sqlite+aiosqlite:///unused.db"))
    served = app_endpoints(app)
    assert served, "no routes found: has FastAPI changed how it lists them?"
    missing = sorted(served - MATRIX.keys())
    assert not missing, f"endpoints without a row in MATRIX: {missing}"
    gone = sorted(MATRIX.keys() - served)
    assert not gone, f"rows in MATRIX for endpoints the app does not serve: {gone}"
    # The OpenAPI document lists nothing the matrix does not know either.
    documented = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    assert documented <= MATRIX.keys(), sorted(documented - MATRIX.keys())
    # An endpoint is open to anonymous callers only if PUBLIC says so too.
    open_to_all = {key for key, row in MATRIX.items() if row[0] < 400}
    assert open_to_all == PUBLIC
    assert all(len(row) == len(CALLERS) for row in MATRIX.values())


async def call(
    client: httpx.AsyncClient, app: FastAPI, method: str, headers: dict[str, str], **kwargs: Any
) -> tuple[int, dict[str, str], bytes]:
    if kwargs["url"].endswith("/stream"):  # an event stream does not end by itself
        status, response_headers, body = await open_stream(app, kwargs["url"], headers)
        if status == 200:
            assert response_headers["content-type"].startswith("text/event-stream")
        return status, response_headers, body
    r = await client.request(method, headers=headers, **kwargs)
    return r.status_code, dict(r.headers), r.content


async def test_every_endpoint_for_every_caller(
    client: httpx.AsyncClient, app: FastAPI, accounts: Any, db: Any
) -> None:
    world = World(client, accounts, db)
    await world.setup()
    wrong = []
    for (method, path), row in MATRIX.items():
        for caller, expected in zip(CALLERS, row, strict=True):
            kwargs = await world.request(method, path)
            status, headers, body = await call(
                client, app, method, await world.headers(caller), **kwargs
            )
            where = f"{method} {path} as {caller}"
            if status != expected:
                wrong.append(f"{where}: {status}, want {expected}: {body[:100]!r}")
            elif expected >= 400:
                error = httpx.Response(status, headers=headers, content=body)
                try:
                    assert_error(error, expected)
                except AssertionError as exc:
                    wrong.append(f"{where}: not the error shape: {exc}")
                if expected == 401 and headers.get("www-authenticate") != "Bearer":
                    wrong.append(f"{where}: 401 without WWW-Authenticate: Bearer")
            if method != "GET" and status < 400:
                await world.used_up(method, path, caller)
    assert not wrong, "\n".join(wrong)


# --- what the matrix cannot show ---------------------------------------------------------------


@pytest.fixture
async def two_members(client: httpx.AsyncClient, accounts: Any) -> tuple[Account, Account, str]:
    """Two members; the first owns a bot, whose id is returned too."""
    owner, stranger = await accounts("member"), await accounts("member")
    r = await client.post("/api/nectar-bots", json={"name": "Private"}, headers=owner.headers)
    assert r.status_code == 201, r.text
    return owner, stranger, r.json()["bot"]["id"]


async def test_another_members_bot_is_indistinguishable_from_none(
    client: httpx.AsyncClient, two_members: tuple[Account, Account, str]
) -> None:
    owner, stranger, bot_id = two_members
    before = (await client.get(f"/api/nectar-bots/{bot_id}", headers=owner.headers)).json()
    missing = str(uuid.uuid4())
    calls: list[tuple[str, str, Callable[[str], dict[str, Any]]]] = [
        ("GET", "/api/nectar-bots/{}", lambda _: {}),
        ("PUT", "/api/nectar-bots/{}", lambda _: {"json": {"name": "Hijacked"}}),
        ("POST", "/api/nectar-bots/{}/regenerate-api-key", lambda _: {}),
        ("DELETE", "/api/nectar-bots/{}", lambda _: {}),
    ]
    for method, template, extra in calls:
        theirs = await client.request(
            method, template.format(bot_id), headers=stranger.headers, **extra(bot_id)
        )
        nobody = await client.request(
            method, template.format(missing), headers=stranger.headers, **extra(missing)
        )
        assert_error(theirs, 404, "bot_not_found")
        assert theirs.json() == nobody.json()
        assert theirs.headers.items() == nobody.headers.items()

    # Nothing was changed by the attempts: same name, same key.
    after = (await client.get(f"/api/nectar-bots/{bot_id}", headers=owner.headers)).json()
    assert after == before
    listed = (await client.get("/api/nectar-bots", headers=stranger.headers)).json()
    assert listed["bots"] == [] and listed["pagination"]["total"] == 0


async def test_admins_see_and_manage_every_bot_members_only_theirs(
    client: httpx.AsyncClient, admin: Account, two_members: tuple[Account, Account, str]
) -> None:
    owner, stranger, bot_id = two_members
    r = await client.post("/api/nectar-bots", json={"name": "Theirs"}, headers=stranger.headers)
    strangers_bot = r.json()["bot"]["id"]
    r = await client.post("/api/nectar-bots", json={"name": "Admin's"}, headers=admin.headers)
    admins_bot = r.json()["bot"]
    assert admins_bot["owner_id"] == str(admin.id)

    def ids(response: httpx.Response) -> set[str]:
        assert response.status_code == 200, response.text
        return {b["id"] for b in response.json()["bots"]}

    everything = await client.get("/api/nectar-bots", headers=admin.headers)
    assert ids(everything) == {bot_id, strangers_bot, admins_bot["id"]}
    assert ids(await client.get("/api/nectar-bots", headers=owner.headers)) == {bot_id}
    assert ids(await client.get("/api/nectar-bots", headers=stranger.headers)) == {strangers_bot}
    # A member cannot reach the admin's bot either.
    r = await client.get(f"/api/nectar-bots/{admins_bot['id']}", headers=owner.headers)
    assert_error(r, 404)

    # An admin's change to a member's bot leaves it the member's.
    r = await client.put(
        f"/api/nectar-bots/{bot_id}", json={"name": "Fixed by admin"}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    mine = (await client.get(f"/api/nectar-bots/{bot_id}", headers=owner.headers)).json()
    assert mine["name"] == "Fixed by admin"
    assert mine["owner_id"] == str(owner.id)


async def test_owner_cannot_be_set_or_changed_through_the_api(
    client: httpx.AsyncClient, admin: Account, two_members: tuple[Account, Account, str], db: Any
) -> None:
    owner, stranger, bot_id = two_members
    r = await client.put(
        f"/api/nectar-bots/{bot_id}", json={"owner_id": str(stranger.id)}, headers=owner.headers
    )
    assert_error(r, 422)
    async with db.connect() as conn:
        stored = (
            await conn.execute(
                sa.text("SELECT owner_id FROM nectar_bots WHERE id = :id").bindparams(
                    sa.bindparam("id", type_=sa.Uuid())
                ),
                {"id": uuid.UUID(bot_id)},
            )
        ).scalar_one()
    assert uuid.UUID(str(stored)) == owner.id
