"""Our small wrapper around job queues: ``enqueue(delivery_ids, delay)``.

Embedded mode drains the outbox in the API process; production enqueues to arq on Redis
for ``nectar worker``. Either way the outbox row is already committed, so a failed enqueue
is logged and left to the sweeper: it delays a notification, it never loses one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

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

    async def enqueue(
        self, delivery_ids: list[uuid.UUID], delay: float = 0.0, tag: str = ""
    ) -> None:
        del tag  # duplicates are harmless: a delivery is claimed before it is sent
        for delivery_id in delivery_ids:
            if delay > 0:
                loop = asyncio.get_running_loop()
                handle = loop.call_later(delay, self._put_later, delivery_id)
                self._timers.add(handle)
            else:
                self._queue.put_nowait(delivery_id)

    def _put_later(self, delivery_id: uuid.UUID) -> None:
        self._timers = {
            t
            for t in self._timers
            if not t.cancelled() and t.when() > asyncio.get_running_loop().time()
        }
        self._queue.put_nowait(delivery_id)

    async def _work(self) -> None:
        while True:
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
        for handle in self._timers:
            handle.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class ArqQueue:
    """Jobs for ``nectar worker``. Job id = delivery id, so a double enqueue is one job."""

    def __init__(self, pool: Any, queue_name: str) -> None:
        self._pool = pool
        self._queue_name = queue_name

    async def enqueue(
        self, delivery_ids: list[uuid.UUID], delay: float = 0.0, tag: str = ""
    ) -> None:
        for delivery_id in delivery_ids:
            job_id = f"{delivery_id}:{tag}" if tag else str(delivery_id)
            try:
                await self._pool.enqueue_job(
                    DELIVER_JOB,
                    str(delivery_id),
                    _job_id=job_id,
                    _queue_name=self._queue_name,
                    _defer_by=delay or None,
                )
            except Exception:
                log.warning(
                    "could not enqueue delivery %s; the sweeper will pick it up",
                    delivery_id,
                    exc_info=True,
                )
