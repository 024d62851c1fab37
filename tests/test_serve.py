"""``nectar serve`` as a user starts it: the first admin, restarts, the API docs."""

from __future__ import annotations

import re
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.processes import HOST, free_port, nectar_env, run_nectar, serving

ADMIN_EMAIL = "owner@example.com"
ADMIN_PASSWORD = "Sup3r-Secret-Admin-Pw!"


@pytest.fixture(scope="module")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database migrated with ``nectar db upgrade``; each test starts from a copy of it."""
    workdir = tmp_path_factory.mktemp("serve-template")
    db = workdir / "nectar.db"
    result = run_nectar(
        "db",
        "upgrade",
        env=nectar_env(NECTAR_DATABASE_URL=f"sqlite+aiosqlite:///{db}"),
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr
    return db


@pytest.fixture
def database(migrated_template: Path, tmp_path: Path) -> Path:
    db = tmp_path / "nectar.db"
    shutil.copyfile(migrated_template, db)
    return db


def env_for(db: Path, **values: str) -> dict[str, str]:
    return nectar_env(NECTAR_DATABASE_URL=f"sqlite+aiosqlite:///{db}", **values)


def sign_in(base_url: str, email: str, password: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/api/auth/token", data={"username": email, "password": password}, timeout=10
    )


def user_rows(db: Path) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT email, role FROM users ORDER BY email").fetchall()


def assert_docs_served(base_url: str) -> None:
    docs = httpx.get(f"{base_url}/docs", timeout=10)
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text.lower()
    schema = httpx.get(f"{base_url}/openapi.json", timeout=10)
    assert schema.status_code == 200
    assert {"/api/auth/token", "/api/nectar-bots"} <= set(schema.json()["paths"])


def test_configured_admin_signs_in_across_restarts_and_docs_are_served(
    database: Path, tmp_path: Path
) -> None:
    env = env_for(database, NECTAR_ADMIN_EMAIL=ADMIN_EMAIL, NECTAR_ADMIN_PASSWORD=ADMIN_PASSWORD)
    outputs = []

    for _start in range(2):
        with serving(env, tmp_path) as server:
            token = sign_in(server.base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
            assert token.status_code == 200, token.text
            body = token.json()
            assert body["token_type"] == "bearer"
            assert body["expires_in"] > 0
            me = httpx.get(
                f"{server.base_url}/api/auth/me",
                headers={"Authorization": f"Bearer {body['access_token']}"},
                timeout=10,
            )
            assert me.json()["role"] == "admin"
            assert sign_in(server.base_url, ADMIN_EMAIL, "wrong-password").status_code == 401
            assert_docs_served(server.base_url)
        outputs.append(server.output())

    # One admin, the configured one: no duplicate, and no generated admin either.
    assert user_rows(database) == [(ADMIN_EMAIL, "admin")]
    for output in outputs:
        assert ADMIN_PASSWORD not in output
        assert "password:" not in output.lower()


def test_first_start_prints_a_generated_admin_password_once(database: Path, tmp_path: Path) -> None:
    env = env_for(database)

    with serving(env, tmp_path) as server:
        first = server.output()
        email = re.search(r"email:\s+(\S+@\S+)", first)
        password = re.search(r"password:\s+(\S+)", first)
        assert email, first
        assert password, first
        assert sign_in(server.base_url, email[1], password[1]).status_code == 200
    assert server.output().count(password[1]) == 1

    with serving(env, tmp_path) as server:
        assert sign_in(server.base_url, email[1], password[1]).status_code == 200
    second = server.output()
    assert password[1] not in second
    assert "password:" not in second.lower()
    assert user_rows(database) == [(email[1], "admin")]


def test_too_short_admin_password_stops_serve_without_printing_it(
    database: Path, tmp_path: Path
) -> None:
    env = env_for(database, NECTAR_ADMIN_EMAIL=ADMIN_EMAIL, NECTAR_ADMIN_PASSWORD="tiny-pw")

    result = run_nectar("serve", "--host", HOST, "--port", str(free_port()), env=env, cwd=tmp_path)

    assert result.returncode == 2
    assert "NECTAR_ADMIN_PASSWORD" in result.stderr
    assert "tiny-pw" not in result.stdout + result.stderr
    assert user_rows(database) == []
