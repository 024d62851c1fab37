"""The API's enqueue: one Lua script per call, writing jobs exactly as arq's own enqueue_job
does, so that an arq worker runs them and a job id is enqueued once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus

from nectar.queue import DELIVER_JOB, ArqQueue
from nectar.redis_pipe import RedisPipe, RedisPyCommands
from workers.settings import deserialize, serialize

pytestmark = pytest.mark.redis


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    redis = ArqRedis.from_url(redis_url)
    redis.job_serializer, redis.job_deserializer = serialize, deserialize
    try:
        yield redis
    finally:
        await redis.aclose()


@pytest.fixture(params=["pipe", "redis-py"])
async def queue_of(
    request: pytest.FixtureRequest, pool: ArqRedis, redis_url: str
) -> AsyncIterator[Callable[[str], ArqQueue]]:
    """ArqQueue on the API's pipelined connection, or on the worker's redis-py client."""
    pipe = RedisPipe.from_url(redis_url)
    assert pipe is not None
    commands = pipe if request.param == "pipe" else RedisPyCommands(pool)
    try:
        yield lambda name: ArqQueue(commands, name, serialize)
    finally:
        await pipe.aclose()


async def _queued(pool: ArqRedis, queue: str) -> list[tuple[str, float]]:
    return [(k.decode(), s) for k, s in await pool.zrange(queue, 0, -1, withscores=True)]


async def test_jobs_read_back_as_arq_wrote_them(
    pool: ArqRedis, queue_of: Callable[[str], ArqQueue], redis_prefix: str
) -> None:
    queue_name = f"{redis_prefix}:queue"
    ids = [uuid.uuid4(), uuid.uuid4()]
    try:
        await queue_of(queue_name).enqueue(ids)
        queued = await _queued(pool, queue_name)
        assert sorted(job_id for job_id, _ in queued) == sorted(str(i) for i in ids)
        for delivery_id in ids:
            job = Job(str(delivery_id), pool, _queue_name=queue_name, _deserializer=deserialize)
            assert await job.status() == JobStatus.queued
            info = await job.info()
            assert info is not None
            assert (info.function, list(info.args), info.kwargs) == (
                DELIVER_JOB,
                [str(delivery_id)],
                {},
            )
    finally:
        await pool.delete(queue_name, *(f"arq:job:{i}" for i in ids))


async def test_a_job_id_is_enqueued_once(
    pool: ArqRedis, queue_of: Callable[[str], ArqQueue], redis_prefix: str
) -> None:
    queue_name = f"{redis_prefix}:queue"
    delivery_id = uuid.uuid4()
    queue = queue_of(queue_name)
    try:
        await queue.enqueue([delivery_id])
        first = await _queued(pool, queue_name)
        await queue.enqueue([delivery_id])
        assert await _queued(pool, queue_name) == first
        # A tagged retry is another job of the same delivery.
        await queue.enqueue([delivery_id], tag="retry-1")
        assert len(await _queued(pool, queue_name)) == 2
    finally:
        await pool.delete(queue_name, f"arq:job:{delivery_id}", f"arq:job:{delivery_id}:retry-1")


async def test_a_delay_defers_the_job(
    pool: ArqRedis, queue_of: Callable[[str], ArqQueue], redis_prefix: str
) -> None:
    queue_name = f"{redis_prefix}:queue"
    now, later = uuid.uuid4(), uuid.uuid4()
    queue = queue_of(queue_name)
    try:
        await queue.enqueue([now])
        await queue.enqueue([later], delay=30)
        scores = dict(await _queued(pool, queue_name))
        assert scores[str(later)] - scores[str(now)] >= 29_000
        ttl = await pool.pttl(f"arq:job:{later}")
        assert ttl > pool.expires_extra_ms  # expires counts from when it may run
    finally:
        await pool.delete(queue_name, f"arq:job:{now}", f"arq:job:{later}")
