"""Benchmark handoff notifications: from the chat request that opens a handoff to the moment
a webhook receiver holds the signed POST, and how many deliveries one worker makes a second.

    .venv/bin/python bench/handoff_notify.py [--handoffs 500] [--rate 20] [--backlog 2000]
                                             [--knowledge] [--profile FILE] [--keep] [--json]
                                             [--only latency|throughput]

The production stack, all on 127.0.0.1: a fresh PostgreSQL database migrated with
`nectar db upgrade`; `nectar serve` (one uvicorn worker, no access log) and ONE `nectar worker`
(arq) on PostgreSQL and Redis (NECTAR_REDIS_URL); a config in enterprise_external mode whose
only channel is one generic webhook endpoint (Standard Webhooks signature, event
handoff.created) at bench/webhook_receiver.py, a separate process that verifies every
signature and records each POST's arrival time. A bot is created through the API (limits of
10^9/hour), without a Honey Jar unless --knowledge (the 32 articles of shared/eval/kb: the
chat turn then also pays for retrieval and the builtin responder, which bench/chat_turn.py
measures). Every chat request is "/human" on a new conversation, so each opens one handoff
(reason bot_command) and so one webhook delivery.

latency     --handoffs chat requests sent open loop at --rate per second on a fixed schedule
            (after --warmup ones that are not counted); for each handoff, the time from the
            request's scheduled send time to the webhook's arrival at the receiver (both read
            CLOCK_MONOTONIC). Run twice: the worker with NECTAR_WORKER_POLL_DELAY=0.01
            (Nectar's default), then 0.5 (arq's default). A handoff whose webhook has not
            arrived --wait s after the last request is lost.
throughput  with the worker stopped, --backlog handoffs are opened through the chat API, so
            their deliveries are committed and enqueued; then one worker is started and timed
            until the receiver holds them all (rate: first to last arrival). The floor, in the
            same run: bench/floor_worker.py, a bare arq worker (same Redis, JSON serializer,
            poll delay 0.01 s, 50 jobs at once) whose job is one httpx POST of the same size to
            the same receiver, on --backlog jobs enqueued before it starts.

--only runs one of the two parts (the throughput part alone first makes --warmup handoffs
with a worker running, to prove the chain works and to size the floor's body like a real
webhook).

The report also counts the jobs the worker refused as "unable to deserialize job" (arq keeps
that as the job's result): the API and the worker must agree on the job format (JSON), or every
delivery waits for the outbox sweeper, 5-10 s late. --profile FILE then drains another backlog
with each worker under py-spy and summarises where their CPU goes.

Everything it creates (processes, database, Redis keys) is removed at the end, also on
Ctrl-C and on kill. Needs PostgreSQL and Redis at --pg-url / --redis-url.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis
from arq import create_pool
from arq.connections import RedisSettings
from common import (
    HERE,
    ConnectionPool,
    CpuMeter,
    Run,
    add_service_arguments,
    command_line,
    create_bot,
    free_port,
    interrupt_on_signals,
    load_average,
    log,
    machine,
    migrate,
    nectar_env,
    percentile,
    post_request,
    run_async,
    venv_bin,
)

SHORT_POLL = 0.01  # Nectar's NECTAR_WORKER_POLL_DELAY default
ARQ_POLL = 0.5  # arq's own default
TARGET_P50_MS = 30.0
TARGET_P99_MS = 150.0
TARGET_RATE = 400.0
REQUEST_TIMEOUT = 10.0
MESSAGE = b'{"message":"/human"}'


def now_s() -> float:
    """CLOCK_MONOTONIC in seconds: the receiver stamps arrivals with the same clock."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) / 1e9


# --- the receiver -----------------------------------------------------------------------------


@dataclass
class Arrivals:
    """What the receiver has recorded, fetched incrementally: first arrival per (kind, key)."""

    port: int
    offset: int = 0
    first: dict[tuple[str, str], float] = field(default_factory=dict)
    repeats: Counter[str] = field(default_factory=Counter)
    stats: dict[str, int] = field(default_factory=dict)

    async def fetch(self, client: httpx.AsyncClient) -> None:
        resp = await client.get(f"http://127.0.0.1:{self.port}/arrivals?from={self.offset}")
        resp.raise_for_status()
        data = resp.json()
        self.stats = data["stats"]
        for kind, key, _msg_id, t_ns in data["arrivals"]:
            if (kind, key) in self.first:
                self.repeats[kind] += 1
            else:
                self.first[(kind, key)] = t_ns / 1e9
        self.offset += len(data["arrivals"])

    def count(self, kind: str, keys: list[str]) -> int:
        return sum(1 for k in keys if (kind, k) in self.first)

    async def wait_for(
        self, kind: str, keys: list[str], within: float, at_least: int | None = None
    ) -> bool:
        """Poll until every key (or ``at_least`` of them) has arrived or ``within`` s pass;
        whether they did."""
        deadline = time.monotonic() + within
        wanted = len(keys) if at_least is None else at_least
        async with httpx.AsyncClient(timeout=10) as client:
            while True:
                await self.fetch(client)
                if self.count(kind, keys) >= wanted:
                    return True
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.05)


# --- sending chat requests --------------------------------------------------------------------


@dataclass(frozen=True)
class Chat:
    port: int
    path: str
    api_key: str

    def request(self) -> bytes:
        return post_request("127.0.0.1", self.port, self.path, MESSAGE, self.api_key)


@dataclass
class Sent:
    scheduled: float
    responded: float = 0.0
    handoff_id: str | None = None
    error: str | None = None


async def _send(pool: ConnectionPool, chat: Chat, sent: Sent) -> None:
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            status, body = await pool.request(chat.request())
    except TimeoutError:
        sent.error = "timeout"
        return
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        sent.error = type(exc).__name__
        return
    sent.responded = now_s()
    if status != 200:
        sent.error = f"HTTP {status}"
        return
    try:
        sent.handoff_id = str(json.loads(body)["handoff"]["id"])
    except (ValueError, KeyError, TypeError):
        sent.error = "no handoff in the response"


async def open_loop(chat: Chat, count: int, rate: float) -> tuple[list[Sent], float]:
    """``count`` requests at ``rate``/s on a fixed schedule, whatever the server does;
    returns them and the largest lag of a send behind its schedule."""
    pool = ConnectionPool("127.0.0.1", chat.port)
    t0 = now_s() + 0.05
    sent: list[Sent] = []
    tasks = []
    max_lag = 0.0
    for i in range(count):
        scheduled = t0 + i / rate
        delay = scheduled - now_s()
        if delay > 0:
            await asyncio.sleep(delay)
        max_lag = max(max_lag, now_s() - scheduled)
        s = Sent(scheduled)
        sent.append(s)
        tasks.append(asyncio.create_task(_send(pool, chat, s)))
    await asyncio.gather(*tasks)
    pool.close()
    return sent, max_lag


async def warm_up(chat: Chat, arrivals: Arrivals, count: int, within: float) -> None:
    """``count`` handoffs one after the other, then wait for all their webhooks (warm-up,
    and proof that the whole chain works before anything is measured)."""
    pool = ConnectionPool("127.0.0.1", chat.port)
    ids = []
    try:
        for _ in range(count):
            s = Sent(now_s())
            await _send(pool, chat, s)
            if s.handoff_id is None:
                raise RuntimeError(f"chat request failed: {s.error}")
            ids.append(s.handoff_id)
    finally:
        pool.close()
    if not await arrivals.wait_for("hook", ids, within):
        raise RuntimeError(f"warm-up: not every webhook arrived within {within:g} s")


async def closed_loop(chat: Chat, count: int, connections: int) -> list[Sent]:
    """``count`` requests as fast as ``connections`` connections go (to build a backlog)."""
    pool = ConnectionPool("127.0.0.1", chat.port)
    sent = [Sent(0.0) for _ in range(count)]
    queue = iter(sent)

    async def work() -> None:
        for s in queue:
            s.scheduled = now_s()
            await _send(pool, chat, s)

    await asyncio.gather(*(work() for _ in range(connections)))
    pool.close()
    return sent


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    run: Run
    env: dict[str, str] = field(default_factory=dict)
    chat: Chat | None = None
    arrivals: Arrivals | None = None
    serve_pid: int = 0
    receiver_pid: int = 0
    workers_started: int = 0
    floor_runs: int = 0
    body_bytes: int = 0

    # processes

    def start_worker(self, poll_delay: float) -> subprocess.Popen[bytes]:
        self.workers_started += 1
        env = {**self.env, "NECTAR_WORKER_POLL_DELAY": str(poll_delay)}
        return self.run.start("worker", [venv_bin("nectar"), "worker"], env)

    def groups(self, worker: int | None) -> dict[str, list[int]]:
        return {
            "serve": [self.serve_pid],
            "worker": [worker] if worker else [],
            "postgres": [pid for pid, _ in self.run.backends()],
            "receiver": [self.receiver_pid],
        }

    def delivery_counts(self) -> dict[str, int]:
        async def query() -> dict[str, int]:
            conn = await asyncpg.connect(self.run.dsn)
            try:
                rows = await conn.fetch(
                    "SELECT status, count(*) AS n FROM notification_deliveries GROUP BY status"
                )
            finally:
                await conn.close()
            return {r["status"]: r["n"] for r in rows}

        return dict(asyncio.run(query()))

    def refused_jobs(self) -> int:
        """Deliveries of this run whose arq job the worker refused as "unable to deserialize
        job" (arq keeps that failure as the job's result for an hour)."""

        async def ids() -> list[str]:
            conn = await asyncpg.connect(self.run.dsn)
            try:
                rows = await conn.fetch("SELECT id::text FROM notification_deliveries")
            finally:
                await conn.close()
            return [r[0] for r in rows]

        keys = [f"arq:result:{i}" for i in asyncio.run(ids())]
        client = redis.Redis.from_url(self.run.redis_url)
        try:
            values = client.mget(keys) if keys else []
        finally:
            client.close()
        return sum(1 for v in values if v and b"unable to deserialize" in v)

    def wait_drained(self, timeout: float = 60.0) -> dict[str, int]:
        """Until no delivery is pending or sending (so that a phase starts clean)."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.delivery_counts()
            if not counts.get("pending") and not counts.get("sending"):
                return counts
            if time.monotonic() > deadline:
                raise RuntimeError(f"deliveries still outstanding after {timeout:g} s: {counts}")
            time.sleep(0.2)

    # setup

    def setup(self) -> None:
        run, args = self.run, self.args
        log(f"database {run.database}: creating and migrating")
        run.create_database()
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        receiver_port, serve_port = free_port(), free_port()
        config = run.workdir / "config.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "nectar_bots": {
                        "handoff": {
                            "mode": "enterprise_external",
                            "notifications": {"notification_types": [], "target_roles": ["admin"]},
                            "integrations": {
                                "allow_private_hosts": ["127.0.0.1"],
                                "webhook": {
                                    "endpoints": [
                                        {
                                            "url": f"http://127.0.0.1:{receiver_port}/hook",
                                            "secret": secret,
                                            "event_types": ["handoff.created"],
                                        }
                                    ]
                                },
                            },
                        }
                    }
                },
                indent=2,
            )
        )
        config.chmod(0o600)
        self.env = nectar_env(run, NECTAR_CONFIG=str(config))
        migrate(run, self.env)

        plain = {k: v for k, v in self.env.items() if not k.startswith("NECTAR_")}
        receiver = run.start(
            "receiver",
            [sys.executable, str(HERE / "webhook_receiver.py"), f"--port={receiver_port}"],
            {**plain, "BENCH_WEBHOOK_SECRET": secret},
        )
        self.receiver_pid = receiver.pid
        self.arrivals = Arrivals(receiver_port)
        server = run.start(
            "serve",
            [venv_bin("nectar"), "serve", f"--port={serve_port}", "--workers=1", "--no-access-log"],
            self.env,
        )
        self.serve_pid = server.pid
        run.wait_ready("receiver", f"http://127.0.0.1:{receiver_port}/healthz")
        run.wait_ready("serve", f"http://127.0.0.1:{serve_port}/readyz")
        log(f"nectar serve pid {server.pid} :{serve_port}; receiver pid {receiver.pid}")
        bot_id, api_key = create_bot(
            f"http://127.0.0.1:{serve_port}",
            name="Hivebox Support (bench)",
            knowledge=args.knowledge,
            handoff_enabled=True,
        )
        what = "on a Honey Jar of the 32 eval articles" if args.knowledge else "without knowledge"
        log(f"bot {bot_id} {what}")
        self.chat = Chat(serve_port, f"/api/nectar-bots/{bot_id}/chat", api_key)
        self.run.before_drop.append(self.drop_arq_keys)

    def drop_arq_keys(self) -> None:
        """arq names its job keys by job id alone (arq:job:<id>, arq:in-progress:<id>, ...):
        remove those of this run's deliveries, floor jobs and cron ticks (named after the
        prefix). Normally few are left."""

        async def ids() -> set[str]:
            conn = await asyncpg.connect(self.run.dsn)
            try:
                rows = await conn.fetch("SELECT id::text FROM notification_deliveries")
            finally:
                await conn.close()
            return {r[0] for r in rows}

        ours = asyncio.run(ids()) if self.run.database_created else set()
        prefix = self.run.redis_prefix
        ours_prefixes = (f"{prefix}-floor-", f"{prefix}:")  # floor jobs; cron ticks
        client = redis.Redis.from_url(self.run.redis_url)
        try:
            doomed = [
                key
                for key in client.scan_iter(match="arq:*", count=1000)
                if (job := key.decode(errors="replace").split(":", 2)[-1]).startswith(ours_prefixes)
                or job.split(":", 1)[0] in ours
            ]
            for i in range(0, len(doomed), 500):
                client.delete(*doomed[i : i + 500])
        finally:
            client.close()

    # latency

    def latency(self, poll_delay: float) -> dict[str, Any]:
        assert self.chat is not None
        assert self.arrivals is not None
        args = self.args
        self.wait_drained()
        worker = self.start_worker(poll_delay)
        try:
            log(f"latency, poll delay {poll_delay:g} s: {args.warmup} warm-up handoffs")
            run_async(warm_up(self.chat, self.arrivals, args.warmup, within=60))
            load = load_average()
            refused = self.refused_jobs()
            meter = CpuMeter(self.groups(worker.pid))
            log(f"latency: {args.handoffs} handoffs at {args.rate:g}/s")
            sent, max_lag = run_async(open_loop(self.chat, args.handoffs, args.rate))
            ids = [s.handoff_id for s in sent if s.handoff_id]
            run_async(self.arrivals.wait_for("hook", ids, args.wait))
            cpu = meter.stop({"postgres": self.groups(None)["postgres"]})
            self.run.check_alive("worker")
        finally:
            self.run.stop("worker")
        # (send time, response time, arrival time or None) per opened handoff
        timed = [
            (s.scheduled, s.responded, self.arrivals.first.get(("hook", s.handoff_id)))
            for s in sent
            if s.handoff_id
        ]
        ms = sorted((got - t0) * 1000 for t0, _, got in timed if got is not None)
        chat_ms = sorted((t1 - t0) * 1000 for t0, t1, _ in timed)
        after_ms = sorted((got - t1) * 1000 for _, t1, got in timed if got is not None)
        errors = Counter(s.error for s in sent if s.error)
        return {
            "poll_delay_s": poll_delay,
            "handoffs": len(sent),
            "rate": args.rate,
            "received": len(ms),
            "lost": len(timed) - len(ms),
            "chat_errors": sum(errors.values()),
            "chat_error_detail": ", ".join(f"{k} x{n}" for k, n in errors.items()),
            "p50_ms": _r(percentile(ms, 50)),
            "p90_ms": _r(percentile(ms, 90)),
            "p99_ms": _r(percentile(ms, 99)),
            "max_ms": _r(ms[-1]) if ms else None,
            "chat_p50_ms": _r(percentile(chat_ms, 50)),
            "chat_p99_ms": _r(percentile(chat_ms, 99)),
            "after_response_p50_ms": _r(percentile(after_ms, 50)),
            "after_response_p99_ms": _r(percentile(after_ms, 99)),
            "max_send_lag_ms": _r(max_lag * 1000),
            "refused_jobs": self.refused_jobs() - refused,
            "cpu": cpu,
            "load_average": load,
        }

    def warm_up_only(self) -> None:
        """Without the latency part: a few handoffs through a running worker (proof that the
        chain works, and the size of a real webhook body for the floor)."""
        assert self.chat is not None
        assert self.arrivals is not None
        self.wait_drained()
        self.start_worker(SHORT_POLL)
        try:
            log(f"warm-up: {self.args.warmup} handoffs")
            run_async(warm_up(self.chat, self.arrivals, self.args.warmup, within=60))
            self.run.check_alive("worker")
        finally:
            self.run.stop("worker")

    # throughput

    def backlog(self, count: int) -> list[str]:
        """Open ``count`` handoffs with no worker running: their deliveries are committed and
        enqueued, and wait."""
        assert self.chat is not None
        self.wait_drained()
        before = self.delivery_counts().get("delivered", 0)
        log(f"throughput: opening {count} handoffs with the worker stopped")
        started = time.perf_counter()
        sent = run_async(closed_loop(self.chat, count, self.args.connections))
        ids = [s.handoff_id for s in sent if s.handoff_id]
        if len(ids) != count:
            errors = Counter(s.error for s in sent if s.error)
            raise RuntimeError(f"backlog: {count - len(ids)} chat requests failed: {errors}")
        counts = self.delivery_counts()
        if counts.get("pending", 0) != count or counts.get("delivered", 0) != before:
            raise RuntimeError(f"backlog: expected {count} pending deliveries, found {counts}")
        log(f"backlog of {count} pending deliveries in {time.perf_counter() - started:.1f} s")
        return ids

    def drain(
        self,
        name: str,
        kind: str,
        keys: list[str],
        start: Any,
        nectar: bool,
        spy_to: Path | None = None,
    ) -> dict[str, Any]:
        """Start a worker on a waiting backlog and time it until the receiver has it all.
        With ``spy_to``, py-spy records the worker from its first delivery on (its sampling
        slows the worker: such a pass is for the profile, not for the figures)."""
        assert self.arrivals is not None
        load = load_average()
        refused = self.refused_jobs() if nectar else 0
        t_start = now_s()
        proc = start()
        swept: set[str] = set()
        watcher = spy = None
        if nectar:
            watcher = SweeperWatch(self.run.redis_url, f"{self.run.redis_prefix}:queue")
            watcher.start()
        try:
            timeout = 60 + len(keys) / 20
            # CPU is counted from the first delivery on, so the start-up (imports, pools)
            # is not charged to the deliveries.
            run_async(self.arrivals.wait_for(kind, keys, 60, at_least=1))
            if spy_to is not None:
                spy = Spy(proc.pid, spy_to)
            meter = CpuMeter(self.groups(proc.pid))
            counted_from = self.arrivals.count(kind, keys)
            done = run_async(self.arrivals.wait_for(kind, keys, timeout))
            cpu = meter.stop({"postgres": self.groups(None)["postgres"]})
            cpu_seconds = time.perf_counter() - meter.t0
            self.run.check_alive(name)
        finally:
            if spy is not None:
                spy.stop()
            if watcher is not None:
                swept = watcher.stop()
            self.run.stop(name)
        times = sorted(t for k in keys if (t := self.arrivals.first.get((kind, k))) is not None)
        lost = len(keys) - len(times)
        first, last = (times[0], times[-1]) if times else (t_start, t_start)
        steady = (len(times) - 1) / (last - first) if len(times) > 1 and last > first else 0.0
        return {
            "jobs": len(keys),
            "received": len(times),
            "lost": lost,
            "complete": done,
            "per_s": round(steady, 1),
            "per_s_from_start": round(len(times) / (last - t_start), 1) if times else 0.0,
            "seconds_first_to_last": round(last - first, 3),
            "seconds_start_to_first": round(first - t_start, 3),
            "sweeper_jobs_seen": len(swept),
            "refused_jobs": self.refused_jobs() - refused if nectar else 0,
            "cpu": cpu,
            "cpu_per_delivery_ms": {
                who: round(cores * cpu_seconds * 1000 / (len(times) - counted_from), 2)
                for who, cores in cpu.items()
                if len(times) > counted_from
            },
            "load_average": load,
        }

    def nectar_throughput(self, spy_to: Path | None = None) -> dict[str, Any]:
        ids = self.backlog(self.args.backlog)
        log("throughput: starting one nectar worker on the backlog")
        result = self.drain(
            "worker", "hook", ids, lambda: self.start_worker(SHORT_POLL), True, spy_to
        )
        result["deliveries"] = self.wait_drained()
        return result

    def floor_throughput(self, spy_to: Path | None = None) -> dict[str, Any]:
        assert self.arrivals is not None
        count = self.args.backlog
        prefix = self.run.redis_prefix
        queue = f"{prefix}:floor-queue"
        self.floor_runs += 1
        keys = [f"{prefix}-floor-{self.floor_runs}-{i}" for i in range(count)]
        log(f"floor: enqueueing {count} jobs, then starting the bare arq worker")
        run_async(enqueue_floor(self.run.redis_url, queue, keys))
        env = {k: v for k, v in self.env.items() if not k.startswith("NECTAR_")}
        env.update(
            BENCH_REDIS_URL=self.run.redis_url,
            BENCH_FLOOR_QUEUE=queue,
            BENCH_FLOOR_URL=f"http://127.0.0.1:{self.arrivals.port}/floor",
            BENCH_FLOOR_BODY_BYTES=str(self.body_bytes or 1000),
        )
        argv = [sys.executable, str(HERE / "floor_worker.py")]
        start = lambda: self.run.start("floor", argv, env)  # noqa: E731
        return self.drain("floor", "floor", keys, start, False, spy_to)

    def profile(self, out: Path) -> dict[str, Any]:
        """Both workers drain another backlog under py-spy; the raw profiles are written to
        ``out`` (Nectar's worker) and ``out`` + ".floor"."""
        floor_out = out.with_name(out.name + ".floor")
        log(f"profile: the nectar worker under py-spy, written to {out}")
        self.nectar_throughput(spy_to=out)
        log(f"profile: the floor worker under py-spy, written to {floor_out}")
        self.floor_throughput(spy_to=floor_out)
        return {"nectar": summarize_profile(out), "floor": summarize_profile(floor_out)}


class Spy:
    """py-spy recording a process (raw collapsed stacks) until stopped."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [
                venv_bin("py-spy"),
                "record",
                "--pid",
                str(pid),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.out.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")


async def enqueue_floor(redis_url: str, queue: str, keys: list[str]) -> None:
    pool = await create_pool(
        RedisSettings.from_dsn(redis_url),
        job_serializer=lambda o: json.dumps(o, separators=(",", ":")).encode(),
        job_deserializer=json.loads,
        default_queue_name=queue,
    )
    try:
        for key in keys:
            await pool.enqueue_job("post", key, _job_id=key, _queue_name=queue)
    finally:
        await pool.aclose()


class SweeperWatch:
    """Counts the jobs the outbox sweeper adds to the queue while a backlog drains (their
    ids end in ``:s<time>``): re-enqueued copies of deliveries already queued, each of which
    the worker runs and finds already claimed or delivered."""

    def __init__(self, redis_url: str, queue: str) -> None:
        self.redis_url, self.queue = redis_url, queue
        self.seen: set[str] = set()
        self._stop = False
        self._thread: Any = None

    def start(self) -> None:
        import threading

        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        client = redis.Redis.from_url(self.redis_url)
        try:
            while not self._stop:
                for job in client.zrange(self.queue, 0, -1):
                    text = job.decode(errors="replace")
                    if ":s" in text:
                        self.seen.add(text)
                time.sleep(0.2)
        finally:
            client.close()

    def stop(self) -> set[str]:
        self._stop = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        return self.seen


FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?):\d+\)$")
# The frames every sample of a worker passes through on its way to the event loop.
ENTRY = {"<module>", "main", "worker", "run_worker"}


def _package(path: str) -> str:
    """py-spy names files from the import root: "sqlalchemy/sql/elements.py" -> sqlalchemy."""
    if path.startswith("<frozen importlib"):
        return "importlib (imports)"
    head = path.split("/", 1)[0]
    return head if "/" in path else f"{head} (script)"


def summarize_profile(raw: Path, top: int = 12) -> dict[str, Any]:
    """Shares of py-spy's samples (active, not idle): for the functions of this repository
    (nectar/, workers/, bench/), including what they call; and by the package of the
    function on top of the stack (where the CPU went)."""
    ours: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [m for m in map(FRAME.match, stack.split(";")) if m]
        if not frames:
            continue
        n = int(count)
        total += n
        names = {
            f"{m['func']} ({m['file']})"
            for m in frames
            if m["func"] not in ENTRY
            and m["file"].split("/", 1)[0] in ("nectar", "workers", "floor_worker.py")
        }
        for name in names:
            ours[name] += n
        packages[_package(frames[-1]["file"])] += n

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(v / total, 3)) for k, v in counter.most_common(top)] if total else []

    return {"samples": total, "ours": share(ours), "packages": share(packages)}


def _r(value: float) -> float | None:
    return None if value != value else round(value, 2)  # NaN: nothing measured


def bench(args: argparse.Namespace, run: Run) -> dict[str, Any]:
    b = Bench(args, run)
    b.setup()
    assert b.arrivals is not None
    results: dict[str, Any] = {"latency": []}
    if args.only in (None, "latency"):
        for poll in (SHORT_POLL, ARQ_POLL):
            results["latency"].append(b.latency(poll))
    else:
        b.warm_up_only()
    b.body_bytes = b.arrivals.stats.get("hook_body_bytes", 0)
    if args.only in (None, "throughput"):
        results["floor"] = b.floor_throughput()
        results["nectar"] = b.nectar_throughput()
    if args.profile:
        results["profile"] = b.profile(Path(args.profile))
    results["receiver"] = b.arrivals.stats
    results["repeats"] = dict(b.arrivals.repeats)
    return results


# --- report -----------------------------------------------------------------------------------


def _ms(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cores(cpu: dict[str, float], who: str) -> str:
    return f"{cpu.get(who, 0.0):.2f}"


def report(summary: dict[str, Any]) -> str:
    m, r, met = summary["machine"], summary["results"], summary["targets_met"]
    args = summary["args"]
    lines = [
        "Nectar handoff notifications: chat request -> signed webhook at a local receiver",
        f"date:    {summary['date']}",
        f"machine: {m['nproc']} CPUs, {m['cpu']}, {m['ram_gib']} GiB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}; load average at start {' '.join(map(str, m['load_average']))}, "
        f"at end {' '.join(map(str, summary['load_average_end']))}",
        f"command: {summary['command']}",
        "stack:   PostgreSQL + Redis, nectar serve (1 uvicorn worker) + ONE nectar worker (arq), "
        "one webhook endpoint; bot "
        + ("with" if args["knowledge"] else "without")
        + " the 32 eval articles",
    ]
    if r["latency"]:
        lines += [
            "",
            f"latency: {args['handoffs']} handoffs ('/human', a new conversation each), open "
            f"loop at {args['rate']:g}/s after {args['warmup']} warm-up ones, from the "
            "request's scheduled send time to the webhook's arrival",
            *_table(_latency_rows(r["latency"], met)),
        ]
    if "nectar" in r:
        lines += [
            "",
            f"throughput: {args['backlog']} deliveries waiting in Redis before one worker "
            "starts; floor: a bare arq worker, one httpx POST per job (poll 0.01 s, 50 jobs at "
            "once)",
            *_table(_throughput_rows(r["nectar"], r["floor"], met)),
        ]
    lines += [
        "",
        "('other': CPU used on the machine by anything but the processes listed; "
        "'generator': this process)",
    ]
    receiver = r["receiver"]
    problems = {
        k: v
        for k, v in receiver.items()
        if k not in ("hook_ok", "floor_ok", "hook_body_bytes") and v
    }
    if problems or r["repeats"]:
        lines.append(f"receiver problems: {problems}, repeated arrivals: {r['repeats']}")
    refused = sum(lat["refused_jobs"] for lat in r["latency"])
    refused += r["nectar"]["refused_jobs"] if "nectar" in r else 0
    if refused:
        lines.append(
            f"{refused} jobs were refused by the worker ('unable to deserialize job': the API "
            "and the worker disagree on the job format); those deliveries waited for the "
            "outbox sweeper."
        )
    for lat in r["latency"]:
        if lat["chat_error_detail"]:
            lines.append(
                f"chat errors at poll {lat['poll_delay_s']:g} s: {lat['chat_error_detail']}"
            )
    if "profile" in r:
        for who in ("nectar", "floor"):
            p = r["profile"][who]
            lines += [
                "",
                f"profile of the {who} worker draining another backlog (py-spy from the first "
                f"delivery on, {p['samples']} samples, not idle):",
                "  functions of this repository, including what they call:",
                *(f"    {share:6.1%}  {name}" for name, share in p["ours"]),
                "  package of the function on top of the stack:",
                *(f"    {share:6.1%}  {name}" for name, share in p["packages"]),
            ]
    return "\n".join(lines)


def _verdict(ok: bool | None) -> str:
    return "ok" if ok else "MISSED"


def _table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    w = [max(len(row[i]) for row in rows) for i in range(3)]
    return [
        f"{a.ljust(w[0])}  {b.rjust(w[1])}  {c.rjust(w[2])}   {d}".rstrip() for a, b, c, d in rows
    ]


def _latency_rows(
    latency: list[dict[str, Any]], met: dict[str, bool | None]
) -> list[tuple[str, str, str, str]]:
    short, slow = latency
    return [
        ("", f"poll {short['poll_delay_s']:g} s", f"poll {slow['poll_delay_s']:g} s", "target"),
        (
            "p50, ms",
            _ms(short["p50_ms"]),
            _ms(slow["p50_ms"]),
            f"<= {TARGET_P50_MS:g} ms  {_verdict(met['p50'])}",
        ),
        ("p90, ms", _ms(short["p90_ms"]), _ms(slow["p90_ms"]), ""),
        (
            "p99, ms",
            _ms(short["p99_ms"]),
            _ms(slow["p99_ms"]),
            f"<= {TARGET_P99_MS:g} ms {_verdict(met['p99'])}",
        ),
        ("max, ms", _ms(short["max_ms"]), _ms(slow["max_ms"]), ""),
        (
            "lost (no webhook)",
            str(short["lost"]),
            str(slow["lost"]),
            f"0          {_verdict(met['no_losses'])}",
        ),
        ("chat errors", str(short["chat_errors"]), str(slow["chat_errors"]), "0"),
        (
            "jobs the worker could not deserialize",
            str(short["refused_jobs"]),
            str(slow["refused_jobs"]),
            "0",
        ),
        (
            "chat response p50 / p99, ms",
            f"{_ms(short['chat_p50_ms'])} / {_ms(short['chat_p99_ms'])}",
            f"{_ms(slow['chat_p50_ms'])} / {_ms(slow['chat_p99_ms'])}",
            "",
        ),
        (
            "webhook after response p50 / p99, ms",
            f"{_ms(short['after_response_p50_ms'])} / {_ms(short['after_response_p99_ms'])}",
            f"{_ms(slow['after_response_p50_ms'])} / {_ms(slow['after_response_p99_ms'])}",
            "",
        ),
        *(
            (f"cores used by {who}", _cores(short["cpu"], who), _cores(slow["cpu"], who), "")
            for who in ("serve", "worker", "postgres", "receiver", "generator", "other")
        ),
        (
            "load average (1/5/15 min) at start",
            " ".join(map(str, short["load_average"])),
            " ".join(map(str, slow["load_average"])),
            "",
        ),
    ]


def _throughput_rows(
    nectar: dict[str, Any], floor: dict[str, Any], met: dict[str, bool | None]
) -> list[tuple[str, str, str, str]]:
    return [
        ("", "nectar worker", "bare arq floor", "target"),
        (
            "deliveries/s, first to last arrival",
            f"{nectar['per_s']:,.0f}",
            f"{floor['per_s']:,.0f}",
            f">= {TARGET_RATE:g}/s  {_verdict(met['throughput'])}",
        ),
        (
            "deliveries/s, from process start",
            f"{nectar['per_s_from_start']:,.0f}",
            f"{floor['per_s_from_start']:,.0f}",
            "",
        ),
        (
            "nectar / floor",
            f"{nectar['per_s'] / floor['per_s']:.0%}" if floor["per_s"] else "-",
            "",
            "",
        ),
        (
            "seconds: start to first / first to last",
            f"{nectar['seconds_start_to_first']:.2f} / {nectar['seconds_first_to_last']:.2f}",
            f"{floor['seconds_start_to_first']:.2f} / {floor['seconds_first_to_last']:.2f}",
            "",
        ),
        (
            "lost",
            str(nectar["lost"]),
            str(floor["lost"]),
            f"0          {_verdict(met['no_losses'])}",
        ),
        (
            "worker CPU per delivery, ms",
            _ms(nectar["cpu_per_delivery_ms"].get("worker"), 2),
            _ms(floor["cpu_per_delivery_ms"].get("worker"), 2),
            "",
        ),
        (
            "postgres CPU per delivery, ms",
            _ms(nectar["cpu_per_delivery_ms"].get("postgres"), 2),
            _ms(floor["cpu_per_delivery_ms"].get("postgres"), 2),
            "",
        ),
        ("sweeper re-enqueues seen", str(nectar["sweeper_jobs_seen"]), "-", ""),
        ("jobs the worker could not deserialize", str(nectar["refused_jobs"]), "-", "0"),
        *(
            (
                f"cores used by {who}, from 1st delivery",
                _cores(nectar["cpu"], who),
                _cores(floor["cpu"], who),
                "",
            )
            for who in ("worker", "postgres", "receiver", "serve", "generator", "other")
        ),
        (
            "load average (1/5/15 min) at start",
            " ".join(map(str, nectar["load_average"])),
            " ".join(map(str, floor["load_average"])),
            "",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--handoffs", type=int, default=500, help="measured handoffs (500)")
    parser.add_argument("--rate", type=float, default=20.0, help="handoffs per second (20)")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up handoffs (20)")
    parser.add_argument("--wait", type=float, default=30.0, help="s to wait for webhooks (30)")
    parser.add_argument("--backlog", type=int, default=2000, help="deliveries drained (2000)")
    parser.add_argument(
        "--connections", type=int, default=8, help="connections building the backlog (8)"
    )
    parser.add_argument(
        "--knowledge",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="give the bot a Honey Jar of the 32 eval articles (default: none)",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="then profile both workers on another backlog with py-spy (raw stacks to FILE "
        "and FILE.floor)",
    )
    parser.add_argument(
        "--only",
        choices=("latency", "throughput"),
        help="run only this part (default: both)",
    )
    add_service_arguments(parser)
    args = parser.parse_args()
    if min(args.handoffs, args.backlog, args.warmup) < 1 or args.rate <= 0:
        parser.error("--handoffs, --backlog and --warmup must be at least 1, --rate above 0")

    interrupt_on_signals()
    command = command_line()
    info = machine()
    run = Run(pg_url=args.pg_url, redis_url=args.redis_url, keep=args.keep)
    try:
        results = bench(args, run)
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    except (RuntimeError, OSError, asyncpg.PostgresError, redis.RedisError, httpx.HTTPError) as exc:
        log(f"failed: {exc}")
        return 1
    finally:
        run.close()

    latency, nectar, floor = results["latency"], results.get("nectar"), results.get("floor")
    lost = sum(x["lost"] for x in latency) + sum(x["lost"] for x in (nectar, floor) if x)
    summary = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": info,
        "load_average_end": load_average(),
        "command": command,
        "args": {
            k: getattr(args, k)
            for k in (
                "handoffs",
                "rate",
                "warmup",
                "wait",
                "backlog",
                "connections",
                "knowledge",
                "only",
            )
        },
        "results": results,
    }
    # None: that part was not run.
    short = latency[0] if latency else None
    summary["targets_met"] = {
        "p50": short["p50_ms"] is not None and short["p50_ms"] <= TARGET_P50_MS if short else None,
        "p99": short["p99_ms"] is not None and short["p99_ms"] <= TARGET_P99_MS if short else None,
        "throughput": nectar["per_s"] >= TARGET_RATE if nectar else None,
        "no_losses": lost == 0,
    }
    print(json.dumps(summary, indent=2) if args.json else report(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
