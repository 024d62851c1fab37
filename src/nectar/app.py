"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis

from nectar import __version__, bootstrap, migrations
from nectar.bots.router import router as bots_router
from nectar.chat.directory import BotDirectory
from nectar.chat.responders import build_responder
from nectar.chat.router import router as chat_router
from nectar.db import create_engine, sessionmaker
from nectar.deps import Services
from nectar.errors import install_error_handlers
from nectar.events import EventBus, MemoryBus, RedisBus
from nectar.handoffs.router import router as handoffs_router
from nectar.knowledge.router import router as knowledge_router
from nectar.middleware import BodySizeLimit
from nectar.observability import MetricsMiddleware
from nectar.observability import router as ops_router
from nectar.ratelimit import Limiter, MemoryLimiter, RedisLimiter
from nectar.settings import Settings, load_settings
from nectar.users.router import auth_router, users_router

log = logging.getLogger(__name__)

DESCRIPTION = """
Nectar hosts support chatbots and hands the conversation to a human the moment the bot
should not go on alone.

Admin and agent endpoints take `Authorization: Bearer <access_token>` from
`POST /api/auth/token` (use the **Authorize** button). Errors are always
`{"error": CODE, "detail": text}`.
"""


class DatabaseNotMigrated(RuntimeError):
    pass


async def _check_schema(services: Services) -> None:
    current = await migrations.current_revision(services.engine)
    head = migrations.head_revision()
    if current != head:
        raise DatabaseNotMigrated(
            f"the database is at revision {current or 'none'} but this version needs {head}; "
            "run `nectar db upgrade` (make run does it for you)"
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(
            settings.database_url, pool_size=settings.db_pool_size, echo=settings.db_echo
        )
        redis: Redis | None = None
        limiter: Limiter
        events: EventBus
        if settings.redis_url:
            redis = Redis.from_url(settings.redis_url)
            limiter = RedisLimiter(redis, settings.redis_prefix)
            events = RedisBus(redis, settings.redis_prefix)
        else:
            limiter = MemoryLimiter()
            events = MemoryBus()
        responder = build_responder(settings.nectar_bots.responder)
        services = Services(
            settings=settings,
            engine=engine,
            sessions=sessionmaker(engine),
            limiter=limiter,
            bots=BotDirectory(engine, limiter),
            responder=responder,
            events=events,
            redis=redis,
        )
        app.state.services = services
        try:
            await _check_schema(services)
            await bootstrap.ensure_admin(settings, services.sessions)
            yield
        finally:
            await responder.aclose()
            if redis is not None:
                await redis.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Nectar",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    install_error_handlers(app)
    app.include_router(ops_router)
    app.include_router(auth_router)
    app.include_router(users_router)
    # Before the bots router: /api/nectar-bots/public/..., /handoffs... must not be read
    # as a bot id.
    app.include_router(chat_router)
    app.include_router(handoffs_router)
    app.include_router(bots_router)
    app.include_router(knowledge_router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    return app
