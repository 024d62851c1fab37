"""Production mode: the API enqueues to arq on Redis and `nectar worker` (here an arq
Worker in this process) delivers. Redis losing the queue delays a notification, never
loses it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from arq import create_pool
from arq.worker import Worker
from redis.asyncio import Redis

from nectar.app import create_app
from nectar.settings import Settings
from tests.conftest import make_settings
from tests.notifications.test_outbox import open_handoff, poll, write_config
from workers.settings import (
    arq_redis_settings,
    deserialize,
    event_loop,
    queue_name,
    serialize,
    worker_settings,
)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[Worker]:
    worker = Worker(**worker_settings(settings, handle_signals=False))
    task = asyncio.create_task(worker.async_run())
    try:
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Jobs already started finish first: close() cancels the ones still running and then
        # raises their CancelledError (a test may stop the worker while one records its
        # outcome, after the effect it waited for became visible).
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
        await worker.close()


async def inbox(client: httpx.AsyncClient, who: Any) -> list[dict]:
    r = await client.get("/api/notifications", headers=who.headers)
    result: list[dict] = r.json()["notifications"]
    return result


async def test_worker_delivers_what_the_api_enqueued(
    database_url: str, admin: Any, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    settings = make_settings(
        database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        config=write_config(tmp_path),
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
        running_worker(settings),
    ):
        _, hid = await open_handoff(client, admin)
        # Well before the sweeper's 5-second rounds could have rescued a lost job.
        got = await poll(lambda: inbox(client, admin), within=2)
        assert got[0]["handoff_id"] == hid


async def test_a_flushed_queue_is_refilled_by_the_sweeper(
    database_url: str, admin: Any, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    settings = make_settings(
        database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        config=write_config(tmp_path),
    )
    app = create_app(settings)
    redis = Redis.from_url(redis_url)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
        ):
            _, hid = await open_handoff(c, admin)  # enqueued, but no worker is running
            assert await redis.zcard(queue_name(settings)) >= 1
            # Jobs are JSON (never pickle), the format the worker reads.
            job_ids = await redis.zrange(queue_name(settings), 0, -1)
            job = json.loads(await redis.get(b"arq:job:" + job_ids[0]))
            assert job["f"] == "deliver"
            # Redis loses the queue (a flush, a failover without persistence): the queue and
            # its jobs go (only this test's own keys: other runs may share this Redis).
            await redis.delete(queue_name(settings), *[b"arq:job:" + j for j in job_ids])
            assert await redis.zcard(queue_name(settings)) == 0
            assert await inbox(c, admin) == []
            async with running_worker(settings):  # its sweeper runs at start-up
                got = await poll(lambda: inbox(c, admin), within=10)
            assert got[0]["handoff_id"] == hid
    finally:
        await redis.aclose()


def test_the_worker_runs_its_jobs_on_uvloop(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """``nectar worker`` runs arq on the loop ``event_loop()`` makes: uvloop."""
    settings = make_settings(
        database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        config=write_config(tmp_path),
    )
    loop = event_loop()
    assert type(loop).__module__.startswith("uvloop")

    async def ping_through_a_burst_worker() -> Any:
        pool = await create_pool(
            arq_redis_settings(settings),
            job_serializer=serialize,
            job_deserializer=deserialize,
            default_queue_name=queue_name(settings),
        )
        try:
            job = await pool.enqueue_job("ping")
            assert job is not None
            worker = Worker(**worker_settings(settings, handle_signals=False, burst=True))
            try:
                await worker.main()  # a burst worker returns once the queue is empty
            finally:
                await worker.close()
            return await job.result(timeout=5)
        finally:
            await pool.aclose()

    try:
        assert loop.run_until_complete(ping_through_a_burst_worker()) == "pong"
    finally:
        loop.close()
