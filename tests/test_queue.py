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
