"""The in-process queue (embedded mode) under the event loop the server runs: uvloop."""

from __future__ import annotations

import asyncio
import uuid

import uvloop

from nectar.queue import InProcessQueue


def test_delayed_jobs_run_once_each_and_leave_no_timers_behind() -> None:
    async def scenario() -> tuple[list[uuid.UUID], int]:
        handled: list[uuid.UUID] = []

        async def handle(delivery_id: uuid.UUID) -> None:
            handled.append(delivery_id)

        queue = InProcessQueue(handle, periodic=[])
        queue.start()
        ids = [uuid.uuid4() for _ in range(3)]
        try:
            # uvloop turns a delay under a millisecond into call_soon: a handle with no when().
            await queue.enqueue(ids[:1], delay=0.0001)
            await queue.enqueue(ids[1:2], delay=0.05)
            await queue.enqueue(ids[2:])
            await asyncio.sleep(0.2)
            await queue.drain()
            return handled, len(queue._timers)
        finally:
            await queue.stop()

    handled, timers_left = uvloop.run(scenario())
    assert sorted(handled) == sorted(set(handled))
    assert len(handled) == 3
    assert timers_left == 0


def test_stop_ends_a_worker_whose_job_turned_its_cancellation_into_an_error() -> None:
    """A driver that closes its connection when cancelled mid-query raises its own error;
    the worker logs it and would wait for the next job for ever: shutdown must not hang."""

    async def scenario() -> tuple[float, list[str]]:
        events: list[str] = []
        started = asyncio.Event()

        async def handle(delivery_id: uuid.UUID) -> None:
            started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                events.append("cancelled")
                raise RuntimeError("connection was closed in the middle of operation") from None

        queue = InProcessQueue(handle, periodic=[(3600, lambda: asyncio.sleep(0))])
        queue.start()
        await queue.enqueue([uuid.uuid4()])
        await asyncio.wait_for(started.wait(), 5)
        loop = asyncio.get_running_loop()
        began = loop.time()
        await asyncio.wait_for(queue.stop(), 10)
        events.extend("done" for task in queue._tasks if task.done())
        return loop.time() - began, events

    took, events = uvloop.run(scenario())
    assert events[0] == "cancelled"
    assert events.count("done") == 9  # 8 workers and the periodic job, all ended
    assert took < 2.0
