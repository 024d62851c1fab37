"""Process settings from the environment (prefix ``NECTAR_``) plus the YAML config file."""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from nectar.config import NectarBotsConfig, load_config, referenced_variables

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_PREFIX = "NECTAR_"
# Variables under this prefix belong to the test harness, not to the service.
_IGNORED_ENV_PREFIXES = ("NECTAR_TEST_",)


class SettingsError(Exception):
    """A setting is unknown or invalid; start-up must stop with this message."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    database_url: str = "sqlite+aiosqlite:///./nectar.db"
    redis_url: str | None = None
    # Prefix for every Redis key, so several deployments (or test runs) can share one Redis.
    redis_prefix: str = "nectar"
    config: Path = Path("config/config.yml")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str = "http://127.0.0.1:8000"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = False

    # Checked here with the same rules as user accounts, so a bad value stops start-up with a
    # message naming the setting (never a traceback echoing the password).
    admin_email: str | None = Field(
        default=None, max_length=320, pattern=r"^\s*[^@\s]+@[^@\s]+\s*$"
    )
    admin_password: SecretStr | None = Field(default=None, min_length=8, max_length=256)

    token_ttl_seconds: int = Field(default=12 * 3600, ge=60, le=90 * 24 * 3600)
    # Failed sign-ins allowed per window before 429.
    login_window_seconds: int = Field(default=900, ge=1)
    login_max_failures_per_account: int = Field(default=5, ge=1)
    login_max_failures_per_ip: int = Field(default=30, ge=1)
    # Client addresses (exact IPs) whose X-Forwarded-For header is believed.
    trusted_proxies: list[str] = Field(default_factory=list)

    # arq worker: how often an idle worker polls Redis (arq's own default, 0.5 s, costs
    # ~255 ms median pickup), and how many jobs it runs at once.
    worker_poll_delay: float = Field(default=0.01, gt=0, le=5)
    worker_max_jobs: int = Field(default=50, ge=1, le=1000)

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_echo: bool = False

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// "
                f"(got {value.split('://', 1)[0]}://)"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("admin_email", "admin_password", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def config_path(self) -> Path:
        return self.config if self.config.is_absolute() else _resolve(self.config)

    @cached_property
    def nectar_bots(self) -> NectarBotsConfig:
        return load_config(self.config_path)


def _resolve(path: Path) -> Path:
    """A relative config path is taken from the working directory, then from the repository."""
    if path.exists():
        return path
    return REPO_ROOT / path


def check_unknown_env(
    environ: os._Environ[str] | dict[str, str] | None = None, also_known: Iterable[str] = ()
) -> None:
    """Reject NECTAR_* variables that are neither settings nor ``also_known`` (config ${VAR}s)."""
    env = os.environ if environ is None else environ
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    allowed = known | {name.upper() for name in also_known}
    unknown = sorted(
        key
        for key in env
        if key.upper().startswith(ENV_PREFIX)
        and key.upper() not in allowed
        and not key.upper().startswith(_IGNORED_ENV_PREFIXES)
    )
    if unknown:
        raise SettingsError(
            f"unknown setting {', '.join(unknown)}; known settings: {', '.join(sorted(known))}"
        )


def load_settings(**overrides: object) -> Settings:
    """Read and validate every setting, including the YAML file, or raise SettingsError."""
    from pydantic import ValidationError

    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(_describe(exc, ENV_PREFIX)) from None
    # A variable the config file interpolates (e.g. NECTAR_HANDOFF_MODE) is not a typo.
    check_unknown_env(also_known=referenced_variables(settings.config_path))
    settings.nectar_bots  # noqa: B018 - load the YAML now so a bad file stops start-up
    return settings


def _describe(exc: Exception, prefix: str) -> str:
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{prefix}{loc.upper()}: {err['msg']}")
    return "; ".join(parts)
