"""Our small wrapper around job queues: ``enqueue(delivery_ids, delay)``.

Embedded mode drains the outbox in the API process; production enqueues to arq on Redis
for ``nectar worker``. Either way the outbox row is already committed, so a failed enqueue
is logged and left to the sweeper: it delays a notification, it never loses one.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from arq.constants import expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import Serializer, serialize_job
from arq.utils import timestamp_ms

from nectar.redis_pipe import Commands, Script

log = logging.getLogger(__name__)

DELIVER_JOB = "deliver"


class Enqueue(Protocol):
    async def __call__(
        self, delivery_ids: list[uuid.UUID], delay: float = 0.0, tag: str = ""
    ) -> None: ...


class JobQueue(Protocol):
    async def enqueue(
        self, delivery_ids: list[uuid.UUID], delay: float = 0.0, tag: str = ""
    ) -> None: ...


STOP_SECONDS = 5.0
STOP_ROUND_SECONDS = 0.5


class InProcessQueue:
    """A few asyncio workers in this process, plus the periodic sweeper and SLA check."""

    def __init__(
        self,
        handler: Callable[[uuid.UUID], Awaitable[Any]],
        periodic: list[tuple[float, Callable[[], Awaitable[Any]]]],
        concurrency: int = 8,
    ) -> None:
        self._handler = handler
        self._periodic = periodic
        self._concurrency = concurrency
        self._queue: asyncio.Queue[uuid.UUID] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._stopping = False

    async def enqueue(
        self, delivery_ids: list[uuid.UUID], delay: float = 0.0, tag: str = ""
    ) -> None:
        del tag  # duplicates are harmless: a delivery is claimed before it is sent
        for delivery_id in delivery_ids:
            if delay > 0:
                self._put_later(delivery_id, delay)
            else:
                self._queue.put_nowait(delivery_id)

    def _put_later(self, delivery_id: uuid.UUID, delay: float) -> None:
        # (uvloop's timer handles have no when(): each one forgets itself when it fires.)
        def fire() -> None:
            self._timers.discard(handle)
            self._queue.put_nowait(delivery_id)

        handle = asyncio.get_running_loop().call_later(delay, fire)
        self._timers.add(handle)

    async def _work(self) -> None:
        while not self._stopping:
            delivery_id = await self._queue.get()
            try:
                await self._handler(delivery_id)
            except Exception:
                log.exception("delivery %s failed in the in-process worker", delivery_id)
            finally:
                self._queue.task_done()

    async def _every(self, seconds: float, job: Callable[[], Awaitable[Any]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:
                log.exception("periodic job failed")

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._concurrency)]
        self._tasks += [asyncio.create_task(self._every(s, job)) for s, job in self._periodic]

    async def drain(self) -> None:
        """Wait until everything enqueued so far was handled (tests, shutdown)."""
        await self._queue.join()

    async def stop(self) -> None:
        """Cancel the workers, and again while any is left: a job may turn its cancellation
        into another error (a driver closing its connection mid-query does), which the loop
        logs and goes on from. Shutdown never waits longer than STOP_SECONDS."""
        self._stopping = True
        for handle in self._timers:
            handle.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_SECONDS
        pending = set(self._tasks)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=STOP_ROUND_SECONDS)
            if pending and loop.time() >= deadline:
                log.warning("%d in-process jobs still running at shutdown", len(pending))
                break


# arq's own enqueue_job (WATCH, EXISTS, MULTI/PSETEX/ZADD/EXEC) costs four round trips per job;
# this does the same checks and writes atomically, for every job of a call, in one.
_ENQUEUE = Script(
    """
local added = 0
for i = 0, #ARGV / 4 - 1 do
    local job_key, result_key, queue = KEYS[i * 3 + 1], KEYS[i * 3 + 2], KEYS[i * 3 + 3]
    local job_id, job = ARGV[i * 4 + 1], ARGV[i * 4 + 2]
    local score, expires = ARGV[i * 4 + 3], ARGV[i * 4 + 4]
    if redis.call('exists', job_key, result_key) == 0 then
        redis.call('psetex', job_key, expires, job)
        redis.call('zadd', queue, score, job_id)
        added = added + 1
    end
end
return added
"""
)


class ArqQueue:
    """Jobs for ``nectar worker``. Job id = delivery id, so a double enqueue is one job.

    Jobs are written exactly as arq's ``enqueue_job`` writes them (its serializer, key names
    and expiry), in one Lua script per call."""

    def __init__(
        self,
        redis: Commands,
        queue_name: str,
        serializer: Serializer,
        expires_extra: int = expires_extra_ms,
    ) -> None:
        self._redis = redis
        self._queue_name = queue_name
        self._serializer = serializer
        self._expires_extra = expires_extra

    async def enqueue(
        self, delivery_ids: list[uuid.UUID], delay: float = 0.0, tag: str = ""
    ) -> None:
        if not delivery_ids:
            return
        now = timestamp_ms()
        score = now + int(delay * 1000)
        expires = score - now + self._expires_extra
        keys: list[str] = []
        args: list[Any] = []
        for delivery_id in delivery_ids:
            job_id = f"{delivery_id}:{tag}" if tag else str(delivery_id)
            job = serialize_job(
                DELIVER_JOB,
                (str(delivery_id),),
                {},
                None,
                now,
                serializer=self._serializer,
            )
            keys += [job_key_prefix + job_id, result_key_prefix + job_id, self._queue_name]
            args += [job_id, job, score, expires]
        try:
            await self._redis.run(_ENQUEUE, keys, args)
        except Exception:
            log.warning(
                "could not enqueue %d deliveries; the sweeper will pick them up",
                len(delivery_ids),
                exc_info=True,
            )
