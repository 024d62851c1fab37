"""The ``nectar`` command line."""

from __future__ import annotations

import asyncio
import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer

from nectar.settings import Settings, SettingsError, load_settings

app = typer.Typer(help="Nectar: support bots with human handoff.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
users_app = typer.Typer(help="User accounts.", no_args_is_help=True)
jars_app = typer.Typer(help="Honey Jars (knowledge bases).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(jars_app, name="jars")


def _settings() -> Settings:
    try:
        return load_settings()
    except Exception as exc:  # SettingsError, ConfigError: print the message, not a traceback
        typer.secho(f"configuration error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="default: NECTAR_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default: NECTAR_PORT")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
    access_log: Annotated[bool, typer.Option(help="log every request")] = True,
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from nectar.logs import configure_logging

    settings = _settings()
    configure_logging(settings)
    uvicorn.run(
        "nectar.asgi:app",
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        access_log=access_log,
        loop="uvloop",
        http="httptools",
        proxy_headers=False,
        log_config=None,
    )


@app.command()
def worker() -> None:
    """Run the background worker (notifications, SLA checks) against Redis."""
    from workers.settings import run_worker

    settings = _settings()
    if not settings.redis_url:
        typer.secho(
            "NECTAR_REDIS_URL is not set: the API process runs the in-process worker itself, "
            "so a separate worker has nothing to do.",
            err=True,
        )
        raise typer.Exit(2)
    run_worker(settings)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    from nectar import migrations

    settings = _settings()
    migrations.upgrade(settings.database_url, revision)
    typer.echo(f"database at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="e.g. -1 or base")]) -> None:
    """Revert migrations down to REVISION."""
    from nectar import migrations

    settings = _settings()
    migrations.downgrade(settings.database_url, revision)
    typer.echo(f"database at {revision}")


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(prompt=True)],
    role: Annotated[str, typer.Option(help="admin, agent or member")] = "member",
    name: str = "",
    password: Annotated[
        str | None, typer.Option(help="read from a prompt when left out (not echoed)")
    ] = None,
) -> None:
    """Create a user account."""
    from pydantic import ValidationError

    from nectar.db import create_engine, session_scope, sessionmaker
    from nectar.users import service
    from nectar.users.exceptions import EmailTaken
    from nectar.users.schemas import UserCreate

    settings = _settings()
    if password is None:
        password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline()
        password = password.rstrip("\n")
    try:
        data = UserCreate.model_validate(
            {"email": email, "password": password, "name": name, "role": role}
        )
    except ValidationError as exc:
        for err in exc.errors():
            typer.secho(f"{'.'.join(map(str, err['loc']))}: {err['msg']}", fg="red", err=True)
        raise typer.Exit(2) from None

    async def _create() -> str:
        engine = create_engine(settings.database_url)
        try:
            async with session_scope(sessionmaker(engine)) as session:
                user = await service.create_user(session, data)
                return str(user.id)
        finally:
            await engine.dispose()

    try:
        user_id = asyncio.run(_create())
    except EmailTaken as exc:
        typer.secho(exc.detail, fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created {data.role.value} {data.email} ({user_id})")


def _import_candidates(directory: Path, recursive: bool) -> tuple[list[Path], int]:
    """Files with a supported extension (sorted, hidden ones left out) and how many others."""
    from nectar.knowledge.uploads import EXTENSIONS

    found, others = [], 0
    for path in sorted(directory.rglob("*") if recursive else directory.iterdir()):
        relative = path.relative_to(directory)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() in EXTENSIONS:
            found.append(path)
        else:
            others += 1
    return found, others


@jars_app.command("import")
def jars_import(
    directory: Annotated[
        Path,
        typer.Argument(
            help="folder of .md, .markdown, .txt and .html files (UTF-8)",
            metavar="DIRECTORY",
            exists=True,
            file_okay=False,
            dir_okay=True,
        ),
    ],
    jar: Annotated[str, typer.Option("--jar", help="name of the jar; created when missing")],
    owner: Annotated[
        str | None, typer.Option(help="email of the jar's owner (default: the first admin)")
    ] = None,
    recursive: Annotated[bool, typer.Option("--recursive", help="include sub-folders")] = False,
) -> None:
    """Load every document file of DIRECTORY into the jar named JAR (created when missing).

    Unchanged files are skipped and a changed file replaces its document: re-running is safe.
    """
    from pydantic import ValidationError
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from sqlalchemy.exc import DBAPIError

    from nectar.db import create_engine, session_scope, sessionmaker
    from nectar.errors import NectarError
    from nectar.knowledge import service
    from nectar.knowledge.uploads import document_from_file

    settings = _settings()
    files, others = _import_candidates(directory, recursive)
    if not files:
        typer.secho(f"no .md, .markdown, .txt or .html files in {directory}", fg="red", err=True)
        raise typer.Exit(1)
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    failed: list[tuple[str, str]] = []

    async def _import() -> str:
        engine = create_engine(settings.database_url)
        factory = sessionmaker(engine)
        try:
            async with session_scope(factory) as session:
                target, actor, created = await service.jar_for_import(session, jar, owner)
            progress = Progress(
                TextColumn("[bold]importing"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                console=Console(stderr=True),
            )
            with progress:
                task = progress.add_task("", total=len(files))
                for path in files:
                    name = path.relative_to(directory).as_posix()
                    progress.update(task, description=name)
                    try:
                        data = document_from_file(name, path.read_bytes(), None)
                        data = data.model_copy(update={"filename": name[:255]})
                        # One unit of work per file: a bad file does not undo the others.
                        async with session_scope(factory) as session:
                            outcome = await service.import_document(session, actor, target.id, data)
                        counts[outcome] += 1
                    except (NectarError, OSError) as exc:
                        reason = exc.detail if isinstance(exc, NectarError) else exc.strerror
                        failed.append((name, str(reason or exc)))
                    progress.advance(task)
            return f"{'created' if created else 'into'} jar {target.name!r} ({target.id})"
        finally:
            await engine.dispose()

    try:
        where = asyncio.run(_import())
    except ValidationError as exc:
        for err in exc.errors():
            typer.secho(f"--jar: {err['msg']}", fg="red", err=True)
        raise typer.Exit(2) from None
    except NectarError as exc:
        typer.secho(exc.detail, fg="red", err=True)
        raise typer.Exit(2) from None
    except (DBAPIError, OSError) as exc:
        typer.secho(f"database error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None

    summary = ", ".join(f"{n} {what}" for what, n in counts.items())
    typer.echo(f"imported {directory} {where}: {summary}, {len(failed)} failed")
    if others:
        typer.echo(f"ignored {others} file(s) with other extensions")
    for name, reason in failed:
        typer.secho(f"failed {name}: {reason}", fg="red", err=True)
    if failed:
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except SettingsError as exc:
        typer.secho(str(exc), fg="red", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
