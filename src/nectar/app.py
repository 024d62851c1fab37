"""The FastAPI application factory."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import Receive, Scope, Send

from nectar import __version__, bootstrap, migrations
from nectar.bots.router import router as bots_router
from nectar.chat.directory import BotDirectory
from nectar.chat.fastpath import ChatFastPath
from nectar.chat.responders import build_responder
from nectar.chat.router import router as chat_router
from nectar.chat.store import open_store
from nectar.db import create_engine, sessionmaker
from nectar.deps import Services
from nectar.errors import install_error_handlers
from nectar.events import EventBus, MemoryBus, RedisBus
from nectar.handoffs.router import router as handoffs_router
from nectar.handoffs.tasks import check_sla
from nectar.knowledge.router import router as knowledge_router
from nectar.middleware import BodySizeLimit
from nectar.notifications.deliveries_router import router as deliveries_router
from nectar.notifications.registry import build_channels
from nectar.notifications.router import router as notifications_router
from nectar.notifications.tasks import Runtime, deliver, sweep
from nectar.observability import MetricsMiddleware
from nectar.observability import router as ops_router
from nectar.queue import ArqQueue, InProcessQueue, JobQueue
from nectar.ratelimit import FallbackLimiter, Limiter, MemoryLimiter, RedisLimiter
from nectar.redis_pipe import Commands, commands_for
from nectar.settings import Settings, load_settings
from nectar.users.router import auth_router, users_router

log = logging.getLogger(__name__)
SWEEP_SECONDS = 2.0
SLA_SECONDS = 30.0

DESCRIPTION = """
Nectar hosts support chatbots and hands the conversation to a human the moment the bot
should not go on alone.

Admin and agent endpoints take `Authorization: Bearer <access_token>` from
`POST /api/auth/token` (use the **Authorize** button). Errors are always
`{"error": CODE, "detail": text}`.
"""


class _Jobs:
    """The job queue of this process, and what to stop at shutdown."""

    def __init__(self, queue: JobQueue, stoppers: list[Callable[[], Awaitable[Any]]]) -> None:
        self.queue = queue
        self._stoppers = stoppers

    async def stop(self) -> None:
        for stop in self._stoppers:
            await stop()


async def _start_jobs(
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    events: EventBus,
    commands: Commands | None,
) -> _Jobs:
    """With Redis, enqueue to arq for `nectar worker`; without, drain the outbox here."""
    if commands is not None:
        from workers.settings import queue_name, serialize

        # Jobs are written by our own script (queue.ArqQueue), not through an arq pool: no
        # connection of its own, and the API starts while Redis is down (/readyz says so).
        return _Jobs(ArqQueue(commands, queue_name(settings), serialize), [])
    channels = build_channels(settings.nectar_bots, sessions, events)
    queue: InProcessQueue

    async def handle(delivery_id: uuid.UUID) -> None:
        await deliver(runtime, delivery_id)

    async def queue_enqueue(
        delivery_ids: list[uuid.UUID], delay: float = 0.0, tag: str = ""
    ) -> None:
        await queue.enqueue(delivery_ids, delay, tag)

    runtime = Runtime(engine, settings.nectar_bots, channels, queue_enqueue, settings.public_url)
    queue = InProcessQueue(
        handle,
        periodic=[
            (SWEEP_SECONDS, lambda: sweep(runtime)),
            (SLA_SECONDS, lambda: check_sla(runtime)),
        ],
    )
    queue.start()
    return _Jobs(queue, [queue.stop, channels.aclose])


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(
            settings.database_url, pool_size=settings.db_pool_size, echo=settings.db_echo
        )
        redis: Redis | None = None
        commands: Commands | None = None
        limiter: Limiter
        events: EventBus
        if settings.redis_url:
            redis = Redis.from_url(settings.redis_url)
            # The turn's own commands (limits, live events, enqueue) on one pipelined
            # connection; subscriptions and the readiness check through redis-py.
            commands = commands_for(settings.redis_url, redis)
            limiter = FallbackLimiter(
                RedisLimiter(commands, settings.redis_prefix), MemoryLimiter()
            )
            events = RedisBus(redis, settings.redis_prefix, commands)
        else:
            limiter = MemoryLimiter()
            events = MemoryBus()
        try:
            await migrations.ensure_current(engine)
        except BaseException:
            await engine.dispose()
            if commands is not None:
                await commands.aclose()
            if redis is not None:
                await redis.aclose()
            raise
        responder = build_responder(settings.nectar_bots.responder)
        turns = await open_store(engine, settings.database_url, settings.db_pool_size)
        sessions = sessionmaker(engine)
        jobs = await _start_jobs(settings, engine, sessions, events, commands)
        services = Services(
            settings=settings,
            engine=engine,
            sessions=sessions,
            limiter=limiter,
            bots=BotDirectory(engine, limiter),
            responder=responder,
            events=events,
            queue=jobs.queue,
            turns=turns,
            redis=redis,
        )
        app.state.services = services
        try:
            await bootstrap.ensure_admin(settings, services.sessions)
            yield
        finally:
            await jobs.stop()
            await turns.close()
            await responder.aclose()
            if commands is not None:
                await commands.aclose()
            if redis is not None:
                await redis.aclose()
            await engine.dispose()

    app = NectarAPI(
        title="Nectar",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    install_error_handlers(app)
    # First: routes are matched in order, and the chat turn is the hot path. Before the bots
    # router too: /api/nectar-bots/public/..., /handoffs... must not be read as a bot id.
    app.include_router(chat_router)
    app.include_router(ops_router)
    app.include_router(auth_router)
    app.include_router(users_router)
    app.include_router(handoffs_router)
    app.include_router(bots_router)
    app.include_router(knowledge_router)
    # Before the inbox router: /api/notifications/deliveries is not a notification id.
    app.include_router(deliveries_router)
    app.include_router(notifications_router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    app.chat_fast_path(settings.max_body_bytes)
    return app


class NectarAPI(FastAPI):
    """FastAPI with the chat turn's own way in (nectar.chat.fastpath) in front of
    everything, the framework's own outer layers included (error page, telemetry hooks,
    body limit, each of which wraps every request and its sends); the turn renders its own
    errors and enforces its own body limit, and whatever it does not take goes through
    FastAPI whole."""

    _fast: ChatFastPath | None = None

    def chat_fast_path(self, max_bytes: int) -> None:
        self._fast = ChatFastPath(super().__call__, max_bytes=max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self._fast
        if fast is None or scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        await fast(scope, receive, send)
