"""Sign-in, access tokens, logout and the limits on failed sign-ins."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from tests.conftest import TEST_PASSWORD, Account
from tests.helpers import assert_error, dump_database, expire_tokens

ADMIN_EMAIL = "admin@example.com"


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Parametrize indirectly with a dict; ``"redis": True`` puts the limits in Redis."""
    values = dict(getattr(request, "param", {}))
    if values.pop("redis", False):
        values["redis_url"] = request.getfixturevalue("redis_url")
        values["redis_prefix"] = request.getfixturevalue("redis_prefix")
    return values


def both_limiters(**overrides: Any) -> Any:
    """Run a test in both deployments: SQLite with the in-process limiter, PostgreSQL with the
    Redis one. (The limits do not depend on the database; this keeps argon2 costs down.)"""
    return pytest.mark.parametrize(
        ("database_url", "settings_overrides"),
        [("sqlite", overrides), ("postgres", {**overrides, "redis": True})],
        indirect=True,
        ids=["embedded", "production"],
    )


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str, **kwargs: Any
) -> httpx.Response:
    return await client.post(
        "/api/auth/token", data={"username": email, "password": password}, **kwargs
    )


def peer(app: FastAPI, host: str) -> httpx.AsyncClient:
    """A client whose TCP peer address is ``host``."""
    transport = httpx.ASGITransport(app=app, client=(host, 1234))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_sign_in_returns_a_bearer_token_that_works(
    client: httpx.AsyncClient, admin: Account, db: Any
) -> None:
    r = await sign_in(client, ADMIN_EMAIL, TEST_PASSWORD)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 12 * 3600
    token = body["access_token"]
    assert token != admin.token

    me = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    assert me.json()["email"] == ADMIN_EMAIL
    assert me.json()["role"] == "admin"
    assert me.json()["last_login_at"] is not None

    # The token itself is stored nowhere; its sha256 is, with the expiry it was issued with.
    stored = await dump_database(db)
    assert token not in stored
    assert token[len("nat_") :] not in stored
    digest = hashlib.sha256(token.encode()).hexdigest()
    async with db.connect() as conn:
        row = (
            await conn.execute(
                sa.text("SELECT expires_at FROM access_tokens WHERE token_hash = :h"),
                {"h": digest},
            )
        ).one()
    expires_at = row[0] if isinstance(row[0], datetime) else datetime.fromisoformat(row[0])
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    expected = datetime.now(UTC) + timedelta(seconds=body["expires_in"])
    assert abs((expires_at - expected).total_seconds()) < 60


async def test_failed_sign_ins_look_the_same_whatever_the_reason(
    client: httpx.AsyncClient, admin: Account, accounts: Any
) -> None:
    gone = await accounts("member", "gone@example.com", active=False)
    wrong_password = await sign_in(client, ADMIN_EMAIL, "not-the-password")
    unknown_email = await sign_in(client, "nobody@example.com", TEST_PASSWORD)
    deactivated = await sign_in(client, gone.email, TEST_PASSWORD)
    bodies = [
        assert_error(r, 401, "invalid_credentials")
        for r in (wrong_password, unknown_email, deactivated)
    ]
    assert bodies[0] == bodies[1] == bodies[2]
    assert "nobody" not in bodies[1]["detail"]
    assert wrong_password.headers["www-authenticate"] == "Bearer"


async def test_sign_in_needs_both_form_fields(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/auth/token", data={"username": ADMIN_EMAIL})
    assert "password" in assert_error(r, 422, "validation_error")["detail"]
    r = await client.post("/api/auth/token", json={"username": ADMIN_EMAIL, "password": "x"})
    assert_error(r, 422, "validation_error")


async def test_missing_or_unknown_tokens_are_refused(client: httpx.AsyncClient) -> None:
    for header in (None, "Bearer", "Bearer nat_not-a-real-token", "Basic YWRtaW46cGFzcw=="):
        headers = {"Authorization": header} if header is not None else {}
        r = await client.get("/api/auth/me", headers=headers)
        assert_error(r, 401, "invalid_token")
        assert r.headers["www-authenticate"] == "Bearer"


async def test_an_expired_token_is_refused(
    client: httpx.AsyncClient, accounts: Any, db: Any
) -> None:
    member = await accounts("member")
    assert (await client.get("/api/auth/me", headers=member.headers)).status_code == 200
    await expire_tokens(db, member.id)
    assert_error(await client.get("/api/auth/me", headers=member.headers), 401, "invalid_token")


async def test_logout_revokes_only_the_token_used(client: httpx.AsyncClient, accounts: Any) -> None:
    member = await accounts("member")
    other = await accounts("member")
    r = await client.post("/api/auth/logout", headers=member.headers)
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_error(await client.get("/api/auth/me", headers=member.headers), 401, "invalid_token")
    assert_error(await client.post("/api/auth/logout", headers=member.headers), 401)
    assert (await client.get("/api/auth/me", headers=other.headers)).status_code == 200


# --- limits on failed sign-ins ------------------------------------------------------------


@both_limiters(login_max_failures_per_account=3)
async def test_an_account_is_locked_after_too_many_failures(
    client: httpx.AsyncClient, admin: Account
) -> None:
    # Spelling the email differently does not open a new allowance.
    for email in ("Admin@Example.com", " ADMIN@EXAMPLE.COM", ADMIN_EMAIL):
        assert_error(await sign_in(client, email, "wrong-password"), 401)

    locked = await sign_in(client, ADMIN_EMAIL, "wrong-password")
    assert_error(locked, 429, "rate_limited")
    assert 0 < int(locked.headers["retry-after"]) <= 900

    # The right password does not get through while the account is locked.
    assert_error(await sign_in(client, ADMIN_EMAIL, TEST_PASSWORD), 429, "rate_limited")
    # Another account from the same address is not affected, and existing tokens still work.
    assert_error(await sign_in(client, "someone@example.com", "wrong-password"), 401)
    assert (await client.get("/api/auth/me", headers=admin.headers)).status_code == 200


@both_limiters(login_max_failures_per_account=2)
async def test_a_successful_sign_in_resets_the_account_counter(
    client: httpx.AsyncClient, admin: Account
) -> None:
    assert_error(await sign_in(client, ADMIN_EMAIL, "wrong-password"), 401)
    assert (await sign_in(client, ADMIN_EMAIL, TEST_PASSWORD)).status_code == 200
    # Without the reset this would be the second failure, and the next attempt a 429.
    assert_error(await sign_in(client, ADMIN_EMAIL, "wrong-password"), 401)
    assert (await sign_in(client, ADMIN_EMAIL, TEST_PASSWORD)).status_code == 200


@both_limiters(login_max_failures_per_ip=2, login_max_failures_per_account=100)
async def test_an_address_is_locked_after_too_many_failures_on_any_accounts(
    client: httpx.AsyncClient, app: FastAPI, admin: Account
) -> None:
    # X-Forwarded-For from an untrusted peer is ignored: all of these come from 127.0.0.1.
    assert_error(
        await sign_in(client, "a@example.com", "x" * 8, headers={"X-Forwarded-For": "1.1.1.1"}),
        401,
    )
    assert_error(
        await sign_in(client, "b@example.com", "x" * 8, headers={"X-Forwarded-For": "2.2.2.2"}),
        401,
    )
    r = await sign_in(client, ADMIN_EMAIL, TEST_PASSWORD, headers={"X-Forwarded-For": "3.3.3.3"})
    assert_error(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) > 0

    # Another address is counted on its own.
    async with peer(app, "10.0.0.9") as elsewhere:
        assert (await sign_in(elsewhere, ADMIN_EMAIL, TEST_PASSWORD)).status_code == 200


@both_limiters(
    login_max_failures_per_ip=2, login_max_failures_per_account=100, trusted_proxies=["127.0.0.1"]
)
async def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
    client: httpx.AsyncClient, app: FastAPI, admin: Account
) -> None:
    via_proxy = {"X-Forwarded-For": "198.51.100.7"}
    for _ in range(2):
        assert_error(await sign_in(client, "a@example.com", "x" * 8, headers=via_proxy), 401)
    assert_error(await sign_in(client, ADMIN_EMAIL, TEST_PASSWORD, headers=via_proxy), 429)
    # The client is the right-most address that is not a trusted proxy.
    chain = {"X-Forwarded-For": "203.0.113.1, 198.51.100.7, 127.0.0.1"}
    assert_error(await sign_in(client, ADMIN_EMAIL, TEST_PASSWORD, headers=chain), 429)

    other = {"X-Forwarded-For": "198.51.100.8"}
    # A peer that is not a trusted proxy cannot claim to be someone else.
    async with peer(app, "10.0.0.9") as untrusted:
        for _ in range(2):
            r = await sign_in(untrusted, "a@example.com", "x" * 8, headers=other)
            assert_error(r, 401)
        # Those failures were counted against 10.0.0.9, not against the address it claimed.
        r = await sign_in(untrusted, ADMIN_EMAIL, TEST_PASSWORD, headers=other)
        assert_error(r, 429)
    # Another client behind the proxy is not locked out, neither by the first client's failures
    # nor by those the untrusted peer tried to pin on it.
    assert (await sign_in(client, ADMIN_EMAIL, TEST_PASSWORD, headers=other)).status_code == 200
