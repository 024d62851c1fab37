"""Start-up tasks: the configured admin, or a first admin with a generated password."""

from __future__ import annotations

import logging
import sys

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from nectar import security
from nectar.db import session_scope
from nectar.settings import Settings
from nectar.users import service as users

log = logging.getLogger(__name__)

DEFAULT_ADMIN_EMAIL = "admin@localhost"


async def ensure_admin(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    async with session_scope(sessions) as session:
        if settings.admin_email and settings.admin_password:
            created = await users.ensure_admin(
                session, settings.admin_email, settings.admin_password.get_secret_value()
            )
            if created:
                log.info("created admin %s from NECTAR_ADMIN_EMAIL", settings.admin_email)
            return
        if await users.any_admin(session):
            return
        password = security.generate_password()
        if await users.ensure_admin(session, DEFAULT_ADMIN_EMAIL, password):
            # Printed once, on the terminal only (never through the log pipeline).
            print(
                "\n"
                "  Nectar created the first admin account:\n"
                f"    email:    {DEFAULT_ADMIN_EMAIL}\n"
                f"    password: {password}\n"
                "  It is shown only this once. Set NECTAR_ADMIN_EMAIL and NECTAR_ADMIN_PASSWORD\n"
                "  to choose your own.\n",
                file=sys.stderr,
                flush=True,
            )
