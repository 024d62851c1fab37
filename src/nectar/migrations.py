"""Alembic, driven from code: ``nectar db upgrade|downgrade`` and the start-up check."""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from nectar.settings import REPO_ROOT

SCRIPT_LOCATION = REPO_ROOT / "alembic"


# Made by hand in migrations, invisible to the models: full-text search structures.
_HAND_MANAGED_PREFIXES = ("honey_jar_chunks_fts", "ix_honey_jar_chunks_search")


def is_hand_managed(name: str | None) -> bool:
    return bool(name) and str(name).startswith(_HAND_MANAGED_PREFIXES)


# PostgreSQL's stored tsvector of each chunk (a generated column the models do not map).
_HAND_MANAGED_COLUMNS = {"search_vector"}


def include_name(name: str | None, type_: str, _parents: object) -> bool:
    """Alembic filter: autogenerate and drift checks ignore the hand-made search structures."""
    if type_ == "column" and name in _HAND_MANAGED_COLUMNS:
        return False
    return not (type_ in ("table", "index") and is_hand_managed(name))


def alembic_config(database_url: str) -> Config:
    cfg = (
        Config(str(REPO_ROOT / "alembic.ini")) if (REPO_ROOT / "alembic.ini").exists() else Config()
    )
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    # ConfigParser interpolation would eat a '%' in a password.
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking: call from a thread when an event loop is running."""
    _ensure_sqlite_dir(database_url)
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


@functools.cache
def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://"))
    head = script.get_current_head()
    assert head is not None
    return head


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:

        def _read(sync_conn: sa.Connection) -> str | None:
            return MigrationContext.configure(sync_conn).get_current_revision()

        return await conn.run_sync(_read)


def _ensure_sqlite_dir(database_url: str) -> None:
    prefix = "sqlite+aiosqlite:///"
    if database_url.startswith(prefix):
        path = database_url[len(prefix) :].split("?", 1)[0]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


class DatabaseNotMigrated(RuntimeError):
    pass


async def ensure_current(engine: AsyncEngine) -> None:
    """Refuse to run against a database this version has not migrated."""
    current = await current_revision(engine)
    head = head_revision()
    if current != head:
        raise DatabaseNotMigrated(
            f"the database is at revision {current or 'none'} but this version needs {head}; "
            "run `nectar db upgrade` (make run does it for you)"
        )
