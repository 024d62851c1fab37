"""User management: admins create, list, change and delete users; users change themselves."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import TEST_PASSWORD, Account
from tests.helpers import assert_error

NEW_PASSWORD = "a-brand-new-passphrase"
OTHER_PASSWORD = "another-long-passphrase"
SHORT_PASSWORD = "tiny-pw"  # 7 characters, one too few
SECRETS = (TEST_PASSWORD, NEW_PASSWORD, OTHER_PASSWORD, SHORT_PASSWORD)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Every response in this module is checked: no password or hash ever leaves the API."""

    async def no_secrets(response: httpx.Response) -> None:
        text = (await response.aread()).decode(errors="replace")
        assert "$argon2" not in text, text
        assert "password_hash" not in text, text
        for secret in SECRETS:
            assert secret not in text, text

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", event_hooks={"response": [no_secrets]}
    ) as c:
        yield c


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/auth/token", data={"username": email, "password": password})


def bearer(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_admin_creates_users_of_each_role(client: httpx.AsyncClient, admin: Account) -> None:
    created = {}
    for role in ("admin", "agent", "member"):
        body: dict[str, Any] = {
            "email": f"  New.{role.title()}@Example.COM ",
            "password": NEW_PASSWORD,
            "name": f"  New {role}  ",
        }
        if role != "member":  # member is the default role
            body["role"] = role
        r = await client.post("/api/users", json=body, headers=admin.headers)
        assert r.status_code == 201, r.text
        assert set(r.json()) == {"message", "user"}
        user = r.json()["user"]
        assert user["email"] == f"new.{role}@example.com"
        assert user["name"] == f"New {role}"
        assert user["role"] == role
        assert user["is_active"] is True
        assert "password" not in user
        uuid.UUID(user["id"])
        created[role] = user

    fetched = await client.get(f"/api/users/{created['agent']['id']}", headers=admin.headers)
    assert fetched.json() == created["agent"]

    # The new user can sign in, with the email in any case.
    headers = bearer(await sign_in(client, "NEW.AGENT@example.com", NEW_PASSWORD))
    me = await client.get("/api/auth/me", headers=headers)
    assert me.json()["id"] == created["agent"]["id"]
    assert me.json()["role"] == "agent"


async def test_an_email_can_be_used_once_whatever_its_case(
    client: httpx.AsyncClient, admin: Account, accounts: Any
) -> None:
    await accounts("member", "taken@example.com")
    r = await client.post(
        "/api/users",
        json={"email": "Taken@Example.com", "password": NEW_PASSWORD},
        headers=admin.headers,
    )
    assert_error(r, 409, "email_taken")
    listed = await client.get("/api/users", params={"search": "taken"}, headers=admin.headers)
    assert listed.json()["pagination"]["total"] == 1


INVALID_USERS: list[tuple[dict[str, Any], str]] = [
    ({"email": "short@example.com", "password": SHORT_PASSWORD}, "password"),
    ({"email": "nopassword@example.com"}, "password"),
    ({"email": "not-an-email", "password": NEW_PASSWORD}, "email"),
    ({"email": "", "password": NEW_PASSWORD}, "email"),
    ({"email": "x@example.com", "password": NEW_PASSWORD, "role": "owner"}, "role"),
    ({"email": "x@example.com", "password": NEW_PASSWORD, "name": "n" * 201}, "name"),
    ({"email": "x@example.com", "password": "p" * 257}, "password"),
]


async def test_invalid_users_are_refused_naming_the_field(
    client: httpx.AsyncClient, admin: Account
) -> None:
    for body, field in INVALID_USERS:
        r = await client.post("/api/users", json=body, headers=admin.headers)
        detail = assert_error(r, 422, "validation_error")["detail"]
        assert detail.startswith(f"{field}:"), (body, detail)
    listed = await client.get("/api/users", headers=admin.headers)
    assert listed.json()["pagination"]["total"] == 1  # only the admin


async def test_list_pages_filters_and_searches(
    client: httpx.AsyncClient, admin: Account, accounts: Any
) -> None:
    for name in ("alice", "bob", "carol"):
        await accounts("member", f"{name}@example.com")
    for name in ("dave", "erin"):
        await accounts("agent", f"{name}@support.example.com")

    async def listing(**params: Any) -> dict[str, Any]:
        r = await client.get("/api/users", params=params, headers=admin.headers)
        assert r.status_code == 200, r.text
        return dict(r.json())

    everyone = await listing()
    assert everyone["pagination"] == {
        "page": 1,
        "pages": 1,
        "per_page": 20,
        "total": 6,
        "has_next": False,
        "has_prev": False,
    }

    first, second, beyond = [await listing(per_page=4, page=p) for p in (1, 2, 3)]
    assert len(first["users"]) == 4 and len(second["users"]) == 2 and beyond["users"] == []
    assert first["pagination"] == {
        "page": 1,
        "pages": 2,
        "per_page": 4,
        "total": 6,
        "has_next": True,
        "has_prev": False,
    }
    assert second["pagination"]["has_next"] is False and second["pagination"]["has_prev"] is True
    paged = [u["id"] for u in first["users"] + second["users"]]
    assert sorted(paged) == sorted(u["id"] for u in everyone["users"])

    agents = await listing(role="agent")
    assert {u["email"] for u in agents["users"]} == {
        "dave@support.example.com",
        "erin@support.example.com",
    }
    assert agents["pagination"]["total"] == 2

    assert [u["email"] for u in (await listing(search="ALI"))["users"]] == ["alice@example.com"]
    # The search matches names too (accounts() names users after their role).
    assert (await listing(search="agent"))["pagination"]["total"] == 2
    assert (await listing(search="support", role="member"))["users"] == []
    # LIKE wildcards are taken literally.
    assert (await listing(search="%"))["users"] == []
    assert (await listing(search="_"))["users"] == []

    for params in ({"per_page": 0}, {"per_page": 101}, {"page": 0}, {"role": "owner"}):
        r = await client.get("/api/users", params=params, headers=admin.headers)
        assert_error(r, 422, "validation_error")


async def test_users_see_themselves_and_admins_see_everyone(
    client: httpx.AsyncClient, admin: Account, accounts: Any
) -> None:
    member = await accounts("member")
    other = await accounts("agent")

    r = await client.get(f"/api/users/{member.id}", headers=admin.headers)
    assert r.status_code == 200
    assert r.json()["email"] == member.email
    assert r.json()["role"] == "member"

    assert (await client.get(f"/api/users/{member.id}", headers=member.headers)).status_code == 200
    r = await client.get(f"/api/users/{other.id}", headers=member.headers)
    assert_error(r, 404, "user_not_found")
    r = await client.get(f"/api/users/{uuid.uuid4()}", headers=admin.headers)
    assert_error(r, 404, "user_not_found")


async def test_admin_changes_role_name_and_deactivates(
    client: httpx.AsyncClient, admin: Account, accounts: Any
) -> None:
    member = await accounts("member")
    r = await client.patch(
        f"/api/users/{member.id}",
        json={"role": "agent", "name": "  Agent Smith "},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"message", "user"}
    assert r.json()["user"]["role"] == "agent"
    assert r.json()["user"]["name"] == "Agent Smith"
    me = await client.get("/api/auth/me", headers=member.headers)
    assert me.json()["role"] == "agent"

    r = await client.patch(
        f"/api/users/{member.id}", json={"is_active": False}, headers=admin.headers
    )
    assert r.status_code == 200 and r.json()["user"]["is_active"] is False
    # Deactivation signs the user out at once and keeps them out.
    assert_error(await client.get("/api/auth/me", headers=member.headers), 401)
    assert_error(await sign_in(client, member.email, TEST_PASSWORD), 401)

    r = await client.patch(
        f"/api/users/{member.id}", json={"is_active": True}, headers=admin.headers
    )
    assert r.json()["user"]["is_active"] is True
    # The revoked token stays revoked; signing in again works.
    assert_error(await client.get("/api/auth/me", headers=member.headers), 401)
    assert (await sign_in(client, member.email, TEST_PASSWORD)).status_code == 200


async def test_admin_resets_a_password_and_signs_the_user_out(
    client: httpx.AsyncClient, admin: Account, accounts: Any
) -> None:
    member = await accounts("member")
    r = await client.patch(
        f"/api/users/{member.id}", json={"password": NEW_PASSWORD}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    assert_error(await client.get("/api/auth/me", headers=member.headers), 401)
    assert_error(await sign_in(client, member.email, TEST_PASSWORD), 401)
    assert (await sign_in(client, member.email, NEW_PASSWORD)).status_code == 200
    # The admin's own session is untouched.
    assert (await client.get("/api/auth/me", headers=admin.headers)).status_code == 200


async def test_changing_your_own_password_needs_the_current_one(
    client: httpx.AsyncClient, admin: Account, accounts: Any
) -> None:
    member = await accounts("member")
    url = f"/api/users/{member.id}"
    r = await client.patch(url, json={"password": NEW_PASSWORD}, headers=member.headers)
    assert "current_password" in assert_error(r, 400)["detail"]
    r = await client.patch(
        url,
        json={"password": NEW_PASSWORD, "current_password": OTHER_PASSWORD},
        headers=member.headers,
    )
    assert_error(r, 400)
    # Admins are no exception when it is their own password.
    r = await client.patch(
        f"/api/users/{admin.id}", json={"password": NEW_PASSWORD}, headers=admin.headers
    )
    assert_error(r, 400)
    assert (await client.get("/api/auth/me", headers=member.headers)).status_code == 200

    r = await client.patch(
        url,
        json={"password": NEW_PASSWORD, "current_password": TEST_PASSWORD},
        headers=member.headers,
    )
    assert r.status_code == 200, r.text
    # A new password signs out every session, this one included.
    assert_error(await client.get("/api/auth/me", headers=member.headers), 401)
    assert (await sign_in(client, member.email, NEW_PASSWORD)).status_code == 200


async def test_users_change_their_name_but_not_their_role_or_activity(
    client: httpx.AsyncClient, admin: Account, accounts: Any
) -> None:
    member = await accounts("member")
    other = await accounts("member")
    url = f"/api/users/{member.id}"
    r = await client.patch(url, json={"name": "Me Myself"}, headers=member.headers)
    assert r.status_code == 200 and r.json()["user"]["name"] == "Me Myself"

    for change in ({"role": "admin"}, {"role": "member"}, {"is_active": False}):
        assert_error(await client.patch(url, json=change, headers=member.headers), 403)
    r = await client.patch(f"/api/users/{other.id}", json={"name": "x"}, headers=member.headers)
    assert_error(r, 404)

    me = (await client.get("/api/auth/me", headers=member.headers)).json()
    assert me["role"] == "member" and me["is_active"] is True
    r = await client.get(f"/api/users/{other.id}", headers=admin.headers)
    assert r.json()["name"] == "Member"


async def test_the_last_active_admin_stays(
    client: httpx.AsyncClient, admin: Account, accounts: Any
) -> None:
    url = f"/api/users/{admin.id}"
    # A deactivated admin does not count.
    retired = await accounts("admin", active=False)
    for change in ({"role": "member"}, {"role": "agent"}, {"is_active": False}):
        r = await client.patch(url, json=change, headers=admin.headers)
        assert_error(r, 409, "last_admin")
    assert_error(await client.delete(url, headers=admin.headers), 409, "last_admin")
    me = (await client.get("/api/auth/me", headers=admin.headers)).json()
    assert me["role"] == "admin" and me["is_active"] is True

    # With a second active admin, either can step down, but not both.
    second = await accounts("admin")
    r = await client.patch(url, json={"role": "member"}, headers=second.headers)
    assert r.status_code == 200, r.text
    r = await client.patch(
        f"/api/users/{second.id}", json={"is_active": False}, headers=second.headers
    )
    assert_error(r, 409, "last_admin")
    # An inactive admin can be deleted: it was not the last active one.
    assert (
        await client.delete(f"/api/users/{retired.id}", headers=second.headers)
    ).status_code == 204


async def test_delete_refuses_users_who_own_bots(
    client: httpx.AsyncClient, admin: Account, accounts: Any
) -> None:
    member = await accounts("member")
    bot = await client.post("/api/nectar-bots", json={"name": "Mine"}, headers=member.headers)
    assert bot.status_code == 201, bot.text
    url = f"/api/users/{member.id}"

    r = await client.delete(url, headers=admin.headers)
    assert "1 bot" in assert_error(r, 409, "user_owns_bots")["detail"]
    assert (await client.get(url, headers=admin.headers)).status_code == 200

    bot_id = bot.json()["bot"]["id"]
    assert (
        await client.delete(f"/api/nectar-bots/{bot_id}", headers=member.headers)
    ).status_code == 204
    r = await client.delete(url, headers=admin.headers)
    assert r.status_code == 204, r.text
    assert r.content == b""

    assert_error(await client.get(url, headers=admin.headers), 404, "user_not_found")
    assert_error(await client.delete(url, headers=admin.headers), 404, "user_not_found")
    assert_error(await client.get("/api/auth/me", headers=member.headers), 401)
    listed = await client.get("/api/users", headers=admin.headers)
    assert [u["id"] for u in listed.json()["users"]] == [str(admin.id)]
