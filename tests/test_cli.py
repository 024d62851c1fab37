"""The ``nectar`` command line, run as a user runs it: the installed console script."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from arq import create_pool
from arq.connections import RedisSettings

from nectar import migrations
from nectar.app import create_app
from tests.conftest import make_settings
from tests.processes import NECTAR, nectar_env, run_nectar
from workers.settings import deserialize, serialize

PASSWORD = "a-long-agent-password"


def url_of(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A migrated SQLite file for the user commands, and the environment pointing at it."""
    workdir = tmp_path_factory.mktemp("cli")
    url = url_of(workdir / "nectar.db")
    migrations.upgrade(url)
    return workdir, nectar_env(NECTAR_DATABASE_URL=url)


def users(workdir: Path) -> dict[str, str]:
    """email -> role, read straight from the database file."""
    with closing(sqlite3.connect(workdir / "nectar.db")) as conn:
        return dict(conn.execute("SELECT email, role FROM users").fetchall())


async def sign_in(workdir: Path, email: str, password: str) -> httpx.Response:
    """Sign in through the real app on the CLI's database; returns GET /api/auth/me."""
    app = create_app(make_settings(url_of(workdir / "nectar.db")))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://nectar") as client:
            token = await client.post(
                "/api/auth/token", data={"username": email, "password": password}
            )
            assert token.status_code == 200, token.text
            bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
            return await client.get("/api/auth/me", headers=bearer)


def test_db_upgrade_and_downgrade(tmp_path: Path) -> None:
    db = tmp_path / "data" / "nectar.db"  # the directory does not exist yet
    env = nectar_env(NECTAR_DATABASE_URL=url_of(db))

    up = run_nectar("db", "upgrade", env=env, cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    with closing(sqlite3.connect(db)) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert {"users", "access_tokens", "nectar_bots"} <= tables
    assert revision == migrations.head_revision()

    down = run_nectar("db", "downgrade", "base", env=env, cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    with closing(sqlite3.connect(db)) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "users" not in tables
    assert "nectar_bots" not in tables


async def test_users_create_makes_an_account_that_can_sign_in(
    migrated: tuple[Path, dict[str, str]],
) -> None:
    workdir, env = migrated
    result = run_nectar(
        "users",
        "create",
        "--email",
        "Agent.Smith@Example.com",
        "--role",
        "agent",
        "--password",
        PASSWORD,
        env=env,
        cwd=workdir,
    )

    assert result.returncode == 0, result.stderr
    assert "agent.smith@example.com" in result.stdout
    assert users(workdir)["agent.smith@example.com"] == "agent"
    me = await sign_in(workdir, "agent.smith@example.com", PASSWORD)
    assert me.status_code == 200, me.text
    assert me.json()["role"] == "agent"

    again = run_nectar(
        "users",
        "create",
        "--email",
        "agent.smith@example.com",
        "--role",
        "member",
        "--password",
        "another-password",
        env=env,
        cwd=workdir,
    )
    assert again.returncode != 0
    assert "already exists" in again.stderr
    assert "Traceback" not in again.stderr
    assert users(workdir)["agent.smith@example.com"] == "agent"


async def test_users_create_reads_the_password_from_stdin(
    migrated: tuple[Path, dict[str, str]],
) -> None:
    workdir, env = migrated
    result = run_nectar(
        "users",
        "create",
        "--email",
        "piped@example.com",
        "--role",
        "admin",
        env=env,
        cwd=workdir,
        stdin="piped-secret-password\n",
    )

    assert result.returncode == 0, result.stderr
    assert "piped-secret-password" not in result.stdout + result.stderr
    me = await sign_in(workdir, "piped@example.com", "piped-secret-password")
    assert me.json()["role"] == "admin"


def test_users_create_rejects_bad_input_naming_each_field(
    migrated: tuple[Path, dict[str, str]],
) -> None:
    workdir, env = migrated
    result = run_nectar(
        "users",
        "create",
        "--email",
        "boss@example.com",
        "--role",
        "boss",
        "--password",
        "short",
        env=env,
        cwd=workdir,
    )

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith("role:") for line in lines), result.stderr
    assert any(line.startswith("password:") for line in lines), result.stderr
    assert "Traceback" not in result.stderr
    assert "boss@example.com" not in users(workdir)


def test_broken_config_file_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("nectar_bots:\n  handoff:\n    triggers:\n      confidence_treshold: 0.5\n")
    env = nectar_env(NECTAR_DATABASE_URL=url_of(tmp_path / "nectar.db"), NECTAR_CONFIG=str(config))

    result = run_nectar("db", "upgrade", env=env, cwd=tmp_path)

    assert result.returncode == 2
    assert "nectar_bots.handoff.triggers.confidence_treshold" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "nectar.db").exists()


def test_worker_without_redis_explains_and_exits_2(tmp_path: Path) -> None:
    env = nectar_env(NECTAR_DATABASE_URL=url_of(tmp_path / "nectar.db"))

    result = run_nectar("worker", env=env, cwd=tmp_path, timeout=20)

    assert result.returncode == 2
    assert "NECTAR_REDIS_URL" in result.stderr


async def test_worker_runs_a_job_enqueued_through_arq(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    env = nectar_env(
        NECTAR_DATABASE_URL=url_of(tmp_path / "nectar.db"),
        NECTAR_REDIS_URL=redis_url,
        NECTAR_REDIS_PREFIX=redis_prefix,
    )
    # The worker's sweeper and SLA check read the outbox from its first second.
    assert run_nectar("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    log = tmp_path / "worker.log"
    redis_settings = RedisSettings.from_dsn(redis_url)
    pool = await create_pool(
        redis_settings,
        default_queue_name=f"{redis_prefix}:queue",
        job_serializer=serialize,
        job_deserializer=deserialize,
    )
    job_id = f"{redis_prefix}-ping"
    with log.open("wb") as sink:
        worker = await asyncio.create_subprocess_exec(
            str(NECTAR),
            "worker",
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            job = await pool.enqueue_job("ping", _job_id=job_id)
            assert job is not None
            assert await job.result(timeout=15, poll_delay=0.05) == "pong", log.read_text()
        finally:
            worker.terminate()
            try:
                code = await asyncio.wait_for(worker.wait(), timeout=10)
            except TimeoutError:
                worker.kill()
                code = await worker.wait()
            keys = [key async for key in pool.scan_iter(f"{redis_prefix}*")]
            keys += [f"arq:{kind}:{job_id}" for kind in ("job", "result", "in-progress", "retry")]
            await pool.delete(*keys)
            await pool.aclose()
    assert code == 0, f"the worker did not stop cleanly on SIGTERM:\n{log.read_text()}"
