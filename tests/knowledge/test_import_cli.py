"""``nectar jars import DIR --jar NAME``, run as a user runs it: the installed console script."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from nectar import migrations
from nectar.app import create_app
from nectar.db import create_engine
from nectar.settings import REPO_ROOT
from tests.conftest import Account, make_account, make_settings
from tests.processes import nectar_env, run_nectar

KB = (REPO_ROOT.parent / "shared" / "eval" / "kb").resolve()


@dataclass
class CliDatabase:
    workdir: Path
    env: dict[str, str]
    url: str
    admin: Account


@pytest.fixture(scope="module")
async def cli_db(tmp_path_factory: pytest.TempPathFactory) -> CliDatabase:
    """A SQLite file migrated by ``nectar db upgrade``, with one admin in it."""
    workdir = tmp_path_factory.mktemp("jars-import")
    url = f"sqlite+aiosqlite:///{workdir / 'nectar.db'}"
    env = nectar_env(NECTAR_DATABASE_URL=url)
    up = run_nectar("db", "upgrade", env=env, cwd=workdir)
    assert up.returncode == 0, up.stderr
    engine = create_engine(url)
    try:
        admin = await make_account(engine, "admin", "importer@example.com")
    finally:
        await engine.dispose()
    return CliDatabase(workdir, env, url, admin)


async def add_account(url: str, role: str, email: str | None = None) -> Account:
    engine = create_engine(url)
    try:
        return await make_account(engine, role, email)
    finally:
        await engine.dispose()


@asynccontextmanager
async def api(url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The real app on the CLI's database."""
    app = create_app(make_settings(url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://nectar") as client:
            yield client


async def jars_named(
    client: httpx.AsyncClient, account: Account, name: str
) -> list[dict[str, Any]]:
    r = await client.get(
        "/api/honey-jars", params={"search": name, "per_page": 100}, headers=account.headers
    )
    assert r.status_code == 200, r.text
    return [j for j in r.json()["honey_jars"] if j["name"] == name]


async def documents(
    client: httpx.AsyncClient, account: Account, jar_id: str
) -> dict[str, dict[str, Any]]:
    """filename -> document"""
    r = await client.get(
        f"/api/honey-jars/{jar_id}/documents", params={"per_page": 100}, headers=account.headers
    )
    assert r.status_code == 200, r.text
    return {d["filename"]: d for d in r.json()["documents"]}


async def top_titles(client: httpx.AsyncClient, account: Account, jar_id: str, q: str) -> list[str]:
    r = await client.get(
        f"/api/honey-jars/{jar_id}/search", params={"q": q}, headers=account.headers
    )
    assert r.status_code == 200, r.text
    return [x["title"] for x in r.json()["results"]]


def import_jar(db: CliDatabase, *args: str) -> subprocess.CompletedProcess[str]:
    return import_into(db.env, db.workdir, *args)


def import_into(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_nectar("jars", "import", *args, env=env, cwd=cwd)
    assert "Traceback" not in result.stderr, result.stderr
    return result


async def in_parallel(*runs: list[str], db: CliDatabase) -> list[subprocess.CompletedProcess[str]]:
    """Independent commands at once: most of their time is starting Python."""
    return list(await asyncio.gather(*(asyncio.to_thread(import_jar, db, *a) for a in runs)))


def counts(added: int, updated: int, unchanged: int, failed: int) -> str:
    return f"{added} added, {updated} updated, {unchanged} unchanged, {failed} failed"


async def test_import_the_eval_kb_then_again_changes_nothing(cli_db: CliDatabase) -> None:
    kb = sorted(KB.glob("*.md"))
    assert len(kb) == 32, KB

    first = import_jar(cli_db, str(KB), "--jar", "Hivebox")

    assert first.returncode == 0, first.stderr
    assert counts(32, 0, 0, 0) in first.stdout
    assert "32/32" in first.stderr  # the progress bar's last state
    admin = cli_db.admin
    async with api(cli_db.url) as client:
        (jar,) = await jars_named(client, admin, "Hivebox")
        assert jar["owner_id"] == str(admin.id)  # nobody named: the first admin
        assert jar["document_count"] == 32
        docs = await documents(client, admin, jar["id"])
        assert set(docs) == {p.name for p in kb}
        titles = {p.name: p.read_text().splitlines()[0].lstrip("# ").strip() for p in kb}
        assert {name: d["title"] for name, d in docs.items()} == titles
        assert all(d["chunks"] >= 1 for d in docs.values())
        hits = await top_titles(client, admin, jar["id"], "reset my password")
        assert hits[0] == titles["reset-password.md"]

    again = import_jar(cli_db, str(KB), "--jar", "Hivebox")

    assert again.returncode == 0, again.stderr
    assert counts(0, 0, 32, 0) in again.stdout
    async with api(cli_db.url) as client:
        assert [j["id"] for j in await jars_named(client, admin, "Hivebox")] == [jar["id"]]
        assert await documents(client, admin, jar["id"]) == docs  # same ids, untouched


async def test_changed_files_replace_their_documents_and_bad_files_fail(
    cli_db: CliDatabase, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "guide.md").write_text("# Sync guide\n\nPress the pineapple button to sync.\n")
    (folder / "notes.txt").write_text("Office hours are Tuesday mornings.\n")
    (folder / "status.html").write_bytes(
        b"<html><head><title>Status &amp; uptime</title></head>"
        b"<body><p>Uptime was 99.98% in March.</p></body></html>"
    )
    (folder / "bad.md").write_bytes("# Résumé\n\nécrit en latin-1".encode("latin-1"))
    (folder / "empty.txt").write_text("\n\n")
    (folder / "diagram.png").write_bytes(b"\x89PNG\r\n")  # not a document: ignored
    (folder / "sub" / "deep.md").write_text("# Deep\n\nOnly with --recursive.\n")
    admin = cli_db.admin

    first = import_jar(cli_db, str(folder), "--jar", "Ops")

    assert first.returncode == 1
    assert counts(3, 0, 0, 2) in first.stdout
    assert "bad.md" in first.stderr
    assert "UTF-8" in first.stderr
    assert "empty.txt" in first.stderr
    async with api(cli_db.url) as client:
        (jar,) = await jars_named(client, admin, "Ops")
        before = await documents(client, admin, jar["id"])
        assert set(before) == {"guide.md", "notes.txt", "status.html"}
        assert before["status.html"]["title"] == "Status & uptime"
        assert before["status.html"]["content_type"] == "text/html"
        assert before["notes.txt"]["title"] == "notes"

    (folder / "guide.md").write_text("# Sync guide\n\nPress the mango button to sync.\n")
    second = import_jar(cli_db, str(folder), "--jar", "Ops", "--recursive")

    assert second.returncode == 1
    assert counts(1, 1, 2, 2) in second.stdout
    async with api(cli_db.url) as client:
        after = await documents(client, admin, jar["id"])
        assert set(after) == {"guide.md", "notes.txt", "status.html", "sub/deep.md"}
        assert after["guide.md"]["id"] == before["guide.md"]["id"]  # replaced, not duplicated
        assert await top_titles(client, admin, jar["id"], "pineapple") == []
        assert await top_titles(client, admin, jar["id"], "mango") == ["Sync guide"]
        assert await top_titles(client, admin, jar["id"], "recursive") == ["Deep"]

    (folder / "bad.md").write_text("# Résumé\n\nnow in UTF-8", encoding="utf-8")
    (folder / "empty.txt").unlink()
    third = import_jar(cli_db, str(folder), "--jar", "Ops", "--recursive")

    assert third.returncode == 0, third.stderr
    assert counts(1, 0, 4, 0) in third.stdout
    async with api(cli_db.url) as client:
        assert (await documents(client, admin, jar["id"]))["bad.md"]["title"] == "Résumé"


async def test_owner_option_and_mistakes(cli_db: CliDatabase, tmp_path: Path) -> None:
    folder = tmp_path / "team"
    folder.mkdir()
    (folder / "handbook.md").write_text("# Handbook\n\nWe ship on Thursdays.\n")
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "readme.pdf").write_bytes(b"%PDF")
    member = await add_account(cli_db.url, "member")
    agent = await add_account(cli_db.url, "agent")
    await add_account(cli_db.url, "admin")  # a later admin does not become the default owner

    mine, fresh = await in_parallel(
        [str(folder), "--jar", "Team", "--owner", member.email.upper()],
        [str(folder), "--jar", "Fresh"],
        db=cli_db,
    )

    assert mine.returncode == 0, mine.stderr
    assert fresh.returncode == 0, fresh.stderr
    async with api(cli_db.url) as client:
        (team,) = await jars_named(client, member, "Team")  # the member sees it as theirs
        assert team["owner_id"] == str(member.id)
        assert team["document_count"] == 1
        (jar,) = await jars_named(client, cli_db.admin, "Fresh")
        assert jar["owner_id"] == str(cli_db.admin.id)
        r = await client.post("/api/honey-jars", json={"name": "Team"}, headers=member.headers)
        assert r.status_code == 201, r.text

    ambiguous, unknown, agents, nothing = await in_parallel(
        [str(folder), "--jar", "Team"],
        [str(folder), "--jar", "Team", "--owner", "ghost@example.com"],
        [str(folder), "--jar", "Agents", "--owner", agent.email],
        [str(tmp_path / "blank"), "--jar", "Blank"],
        db=cli_db,
    )

    assert ambiguous.returncode == 2
    assert "--owner" in ambiguous.stderr
    assert unknown.returncode == 2
    assert "ghost@example.com" in unknown.stderr
    assert agents.returncode == 2
    assert "agent" in agents.stderr
    assert nothing.returncode == 1
    assert ".md" in nothing.stderr
    async with api(cli_db.url) as client:
        assert len(await jars_named(client, member, "Team")) == 2  # none of that changed a thing
        for name in ("Agents", "Blank"):
            assert await jars_named(client, cli_db.admin, name) == []


async def test_import_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    """The same command against PostgreSQL (the tests above run it on SQLite)."""
    await asyncio.to_thread(migrations.upgrade, postgres_url)
    owner = await add_account(postgres_url, "member")
    jar_name = f"Releases {owner.id.hex[:8]}"
    (tmp_path / "a.md").write_text("# Alpha\n\nThe alpha release ships in May.\n")
    (tmp_path / "b.html").write_text("<h1>Beta</h1><p>The beta has dark mode.</p>")
    env = nectar_env(NECTAR_DATABASE_URL=postgres_url)
    args = (str(tmp_path), "--jar", jar_name, "--owner", owner.email)

    first = import_into(env, tmp_path, *args)
    (tmp_path / "a.md").write_text("# Alpha\n\nThe alpha release slipped to June.\n")
    second = import_into(env, tmp_path, *args)

    assert first.returncode == 0, first.stderr
    assert counts(2, 0, 0, 0) in first.stdout
    assert second.returncode == 0, second.stderr
    assert counts(0, 1, 1, 0) in second.stdout
    async with api(postgres_url) as client:
        (jar,) = await jars_named(client, owner, jar_name)
        assert jar["document_count"] == 2
        assert await top_titles(client, owner, jar["id"], "dark mode") == ["Beta"]
        assert await top_titles(client, owner, jar["id"], "june") == ["Alpha"]
        assert await top_titles(client, owner, jar["id"], "may") == []
