"""The ``nectar`` command line."""

from __future__ import annotations

import asyncio
import getpass
import sys
from typing import Annotated

import typer

from nectar.settings import Settings, SettingsError, load_settings

app = typer.Typer(help="Nectar: support bots with human handoff.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
users_app = typer.Typer(help="User accounts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")


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


def main() -> None:
    try:
        app()
    except SettingsError as exc:
        typer.secho(str(exc), fg="red", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
