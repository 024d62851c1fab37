"""The arq worker (``nectar worker`` or ``arq workers.settings.WorkerSettings``).

Jobs receive ids and reload rows; payloads are JSON, never pickle. Cron: the outbox sweeper
every few seconds and the SLA check every 30 s (arq runs each tick on one worker only).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import uuid
from typing import Any

from arq import cron
from arq.connections import RedisSettings
from arq.worker import func
from arq.worker import run_worker as arq_run_worker

from nectar.settings import Settings

log = logging.getLogger(__name__)


def serialize(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def deserialize(data: bytes) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(data)
    return result


def queue_name(settings: Settings) -> str:
    return f"{settings.redis_prefix}:queue"


def arq_redis_settings(settings: Settings) -> RedisSettings:
    assert settings.redis_url
    return RedisSettings.from_dsn(settings.redis_url)


async def ping(_ctx: dict[str, Any]) -> str:
    """A no-op job: proves a worker is consuming the queue."""
    return "pong"


async def startup(ctx: dict[str, Any]) -> None:
    from nectar.db import create_engine, sessionmaker
    from nectar.events import RedisBus
    from nectar.migrations import ensure_current
    from nectar.notifications.registry import build_channels
    from nectar.notifications.tasks import Runtime
    from nectar.queue import ArqQueue
    from nectar.redis_pipe import RedisPyCommands
    from nectar.settings import load_settings

    settings: Settings = ctx.get("settings") or load_settings()
    engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
    try:
        await ensure_current(engine)
    except BaseException:
        await engine.dispose()
        raise
    events = RedisBus(ctx["redis"], settings.redis_prefix)
    channels = build_channels(settings.nectar_bots, sessionmaker(engine), events)
    queue = ArqQueue(RedisPyCommands(ctx["redis"]), queue_name(settings), serialize)
    ctx["engine"] = engine
    ctx["channels"] = channels
    ctx["runtime"] = Runtime(
        engine, settings.nectar_bots, channels, queue.enqueue, settings.public_url
    )
    if ctx.get("freeze_gc"):
        # What start-up built lives as long as the process: out of the cyclic collector's
        # way, whose full collections walked all of it (~0.1 ms of CPU per delivery).
        gc.collect()
        gc.freeze()


async def shutdown(ctx: dict[str, Any]) -> None:
    if "runtime" in ctx:
        await ctx["runtime"].store.aclose()
    if "channels" in ctx:
        await ctx["channels"].aclose()
    if "engine" in ctx:
        await ctx["engine"].dispose()


async def deliver_job(ctx: dict[str, Any], delivery_id: str) -> str:
    from nectar.notifications.tasks import deliver

    outcome: str = await deliver(ctx["runtime"], uuid.UUID(delivery_id))
    return outcome


async def sweep_job(ctx: dict[str, Any]) -> int:
    from nectar.notifications.tasks import sweep

    count: int = await sweep(ctx["runtime"])
    return count


async def sla_job(ctx: dict[str, Any]) -> int:
    from nectar.handoffs.tasks import check_sla

    count: int = await check_sla(ctx["runtime"])
    return count


def worker_settings(settings: Settings, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        # keep_result=0: a finished job leaves no result key, so the same delivery id can be
        # enqueued again (a retry, a sweep) without arq refusing it as a duplicate.
        "functions": [func(deliver_job, name="deliver", keep_result=0, max_tries=3), ping],
        # Cron job ids are global in Redis: named after our prefix, so deployments (or test
        # runs) sharing one Redis do not swallow each other's sweeps.
        "cron_jobs": [
            cron(
                sweep_job,
                name=f"{settings.redis_prefix}:sweep",
                second=set(range(0, 60, 5)),
                run_at_startup=True,
                keep_result=0,
            ),
            cron(sla_job, name=f"{settings.redis_prefix}:sla", second={0, 30}, keep_result=0),
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings},
        "redis_settings": arq_redis_settings(settings),
        "queue_name": queue_name(settings),
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        # arq's default 0.5 s poll costs ~255 ms median pickup; 10 ms costs ~7 ms.
        "poll_delay": settings.worker_poll_delay,
        "max_jobs": settings.worker_max_jobs,
        "handle_signals": True,
    }
    values.update(overrides)
    return values


class WorkerSettings:
    """For ``arq workers.settings.WorkerSettings``; reads the same NECTAR_* environment."""


def _populate() -> None:
    try:
        from nectar.settings import load_settings

        settings = load_settings()
    except Exception:  # imported without a configured environment (tests, tooling)
        return
    if settings.redis_url:
        for key, value in worker_settings(settings).items():
            setattr(WorkerSettings, key, value)


_populate()


def event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (it comes with uvicorn[standard]): the worker spends much of its
    time in the event loop, switching between many short jobs."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_worker(settings: Settings) -> None:
    # arq's Worker runs on the current event loop.
    asyncio.set_event_loop(event_loop())
    values = worker_settings(settings)
    values["ctx"]["freeze_gc"] = True  # this process is the worker (not a test hosting one)
    arq_run_worker(values)
