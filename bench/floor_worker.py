"""The floor for bench/handoff_notify.py's throughput: a bare arq worker whose job does one
httpx POST to the webhook receiver, and nothing else.

    BENCH_REDIS_URL=redis://127.0.0.1:6379/0 BENCH_FLOOR_QUEUE=q \\
    BENCH_FLOOR_URL=http://127.0.0.1:8300/floor python bench/floor_worker.py

Configured like Nectar's worker (workers/settings.py): JSON job serializer, poll delay
0.01 s, 50 jobs at once, keep_result=0, one shared httpx.AsyncClient. So the difference
between the two is what Nectar's delivery job does beyond the POST (database work, the
payload, the signature, the attempt record). It is deliberately left plain, as it has
always been measured: arq's stock asyncio loop and httpx's default client, where Nectar's
worker runs on uvloop and gates its client (at most 10 requests on the wire, asyncio streams
under httpcore; see nectar/notifications/channels/http.py). Those are part of Nectar's
figure, not of the floor's. The job's body is ``{"key": ..., "pad": ...}``,
padded to ``BENCH_FLOOR_BODY_BYTES`` so that it is about the size of a real webhook payload.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
from arq import run_worker
from arq.connections import RedisSettings
from arq.worker import func

POLL_DELAY = 0.01  # Nectar's NECTAR_WORKER_POLL_DELAY default
MAX_JOBS = 50  # Nectar's NECTAR_WORKER_MAX_JOBS default
URL = os.environ.get("BENCH_FLOOR_URL", "http://127.0.0.1:8300/floor")
BODY_BYTES = int(os.environ.get("BENCH_FLOOR_BODY_BYTES", "1000"))


def serialize(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def deserialize(data: bytes) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(data)
    return result


async def startup(ctx: dict[str, Any]) -> None:
    ctx["client"] = httpx.AsyncClient(timeout=10.0, follow_redirects=False)


async def shutdown(ctx: dict[str, Any]) -> None:
    if "client" in ctx:
        await ctx["client"].aclose()


async def post(ctx: dict[str, Any], key: str) -> int:
    body = json.dumps({"key": key, "pad": ""}).encode()
    body = json.dumps({"key": key, "pad": "x" * max(0, BODY_BYTES - len(body))}).encode()
    response = await ctx["client"].post(
        URL, content=body, headers={"Content-Type": "application/json"}
    )
    response.raise_for_status()
    return response.status_code


class WorkerSettings:
    functions = [func(post, name="post", keep_result=0, max_tries=3)]  # type: ignore[arg-type]
    on_startup = startup
    on_shutdown = shutdown
    queue_name = os.environ.get("BENCH_FLOOR_QUEUE", "nectar-bench-floor:queue")
    redis_settings = RedisSettings.from_dsn(
        os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    job_serializer = serialize
    job_deserializer = deserialize
    poll_delay = POLL_DELAY
    max_jobs = MAX_JOBS
    handle_signals = True


if __name__ == "__main__":
    run_worker(WorkerSettings)  # type: ignore[arg-type]
