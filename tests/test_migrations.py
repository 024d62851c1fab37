"""Alembic is the schema: both directions work on both databases, and models never drift."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from nectar import migrations
from nectar.app import create_app
from nectar.db import create_engine
from nectar.migrations import DatabaseNotMigrated
from nectar.models import metadata
from tests.conftest import (
    _create_database,
    _drop_database,
    _pg_reachable,
    make_settings,
    pg_url,
    unavailable,
)

MODEL_TABLES = {table.name for table in metadata.sorted_tables}


@pytest.fixture(params=["sqlite", "postgres"])
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of its own (not the session's migrated one), dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    problem = await _pg_reachable()
    if problem:
        unavailable("PostgreSQL at 127.0.0.1:5432", problem)
    name = f"nectar_migrations_{uuid.uuid4().hex[:12]}"
    await _create_database(name)
    try:
        yield pg_url(name)
    finally:
        await _drop_database(name)


# Alembic's env.py runs its own event loop, so it is driven from a thread here.
async def upgrade(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(migrations.upgrade, url, revision)


async def downgrade(url: str, revision: str) -> None:
    await asyncio.to_thread(migrations.downgrade, url, revision)


async def inspect_schema(url: str) -> tuple[set[str], str | None]:
    """The tables in the database and its Alembic revision."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
        return tables, await migrations.current_revision(engine)
    finally:
        await engine.dispose()


async def schema_drift(url: str) -> list[Any]:
    """What autogenerate would put in a new revision: empty when models match migrations."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:

            def compare(sync: sa.Connection) -> list[Any]:
                context = MigrationContext.configure(
                    sync,
                    # The same options alembic/env.py gives autogenerate.
                    opts={"compare_type": True, "include_name": migrations.include_name},
                )
                return list(compare_metadata(context, metadata))

            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_and_upgrade_again(fresh_url: str) -> None:
    await upgrade(fresh_url)
    tables, revision = await inspect_schema(fresh_url)
    assert revision == migrations.head_revision()
    assert tables >= MODEL_TABLES
    assert {"users", "access_tokens", "nectar_bots"} <= tables

    await downgrade(fresh_url, "base")
    after_downgrade, revision = await inspect_schema(fresh_url)
    assert revision is None
    assert after_downgrade <= {"alembic_version"}, "downgrade base left tables behind"

    await upgrade(fresh_url)
    again, revision = await inspect_schema(fresh_url)
    assert revision == migrations.head_revision()
    assert again == tables


async def test_models_and_migrations_do_not_drift(fresh_url: str) -> None:
    await upgrade(fresh_url)

    drift = await schema_drift(fresh_url)

    assert drift == [], (
        "the models differ from what the migrations build; add a revision "
        "(alembic revision --autogenerate) for:\n" + "\n".join(map(repr, drift))
    )


async def test_app_refuses_an_unmigrated_database(fresh_url: str) -> None:
    app = create_app(make_settings(fresh_url))
    with pytest.raises(DatabaseNotMigrated, match=r"run `nectar db upgrade`"):
        async with app.router.lifespan_context(app):
            pass

    # Once migrated, the same app starts.
    await upgrade(fresh_url)
    async with app.router.lifespan_context(app):
        pass
