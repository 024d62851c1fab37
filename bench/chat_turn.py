"""Benchmark the chat turn against the floor of its stack, in one run.

    .venv/bin/python bench/chat_turn.py [--duration 15] [--connections 50] [--rate 100]
                                        [--keep] [--json]

It creates a fresh PostgreSQL database, migrates it with `nectar db upgrade`, starts the real
server (`nectar serve`: one uvicorn worker, uvloop, httptools, no access log) on PostgreSQL and
Redis, and through the public API signs in, loads the 32 articles of shared/eval/kb into a
Honey Jar and creates a bot on it. Beside it runs bench/floor_app.py (the same stack reduced to
a validated body and one INSERT through a raw asyncpg pool). Both get the same load: user turns
from shared/eval/dev.jsonl, about half starting a conversation and half continuing one.

Two measurements per app:
  throughput  wrk (bench/chat_mix.lua), closed loop, --connections for --duration s after a
              warm-up. Before that, both generators (wrk and the Python client) are run against
              a constant GET route to show what the generator itself can drive.
  latency     an open-loop Python asyncio client (keep-alive connections) sending --rate
              requests/s on a fixed schedule whatever the server does; latency is taken from
              each request's scheduled send time, so a stalled server cannot hide its stall
              (no coordinated omission).

Needs wrk (`apt-get install -y wrk`), and PostgreSQL and Redis at --pg-url / --redis-url.
Everything it creates (servers, database, Redis keys) is removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import resource
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path(os.environ.get("NECTAR_BENCH_SHARED", REPO.parent / "shared"))
LUA = HERE / "chat_mix.lua"
ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "bench-" + secrets.token_urlsafe(12)
FLOOR_APP_NAME = "nectar-bench-floor"  # floor_app.APPLICATION_NAME
TARGET_RATIO = 0.25
TARGET_P99_MS = 50.0
CEILING_SECONDS = 5
REQUEST_TIMEOUT = 10.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the machine ------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) / 1024 / 1024
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "ram_gib": round(ram, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def wrk_version() -> str:
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).split("Copyright")[0].strip()


# --- CPU accounting (who used the two cores during a measurement) ------------------------------


def _proc_cpu(pid: int) -> float:
    """CPU seconds a process has used, or 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _machine_busy() -> float:
    """CPU seconds all cores have spent busy since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def wait_idle(pid: int, timeout: float = 30.0, busy: float = 0.05) -> float:
    """Wait until a server has worked off what an earlier phase left queued (it uses under
    ``busy`` of a core for a quarter of a second); return the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        before = _proc_cpu(pid)
        time.sleep(0.25)
        if _proc_cpu(pid) - before < busy * 0.25:
            break
    return time.perf_counter() - started


class CpuMeter:
    """Cores used during an interval by: the server, its PostgreSQL backends, the load
    generator (wrk, a child, or this process), and everything else on the machine."""

    def __init__(self, server_pid: int, backend_pids: list[int]) -> None:
        self.server_pid = server_pid
        self.backend_pids = backend_pids
        self.t0 = time.perf_counter()
        self.server0 = _proc_cpu(server_pid)
        self.backends0 = {pid: _proc_cpu(pid) for pid in backend_pids}
        self.machine0 = _machine_busy()
        self.children0 = self._children()
        self.self0 = time.process_time()

    @staticmethod
    def _children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def stop(self, backend_pids: list[int]) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        server = _proc_cpu(self.server_pid) - self.server0
        postgres = sum(_proc_cpu(pid) - self.backends0.get(pid, 0.0) for pid in backend_pids)
        generator = (self._children() - self.children0) + (time.process_time() - self.self0)
        total = _machine_busy() - self.machine0
        other = max(0.0, total - server - postgres - generator)
        return {
            name: round(value / wall, 2)
            for name, value in (
                ("server", server),
                ("postgres", postgres),
                ("generator", generator),
                ("other", other),
                ("total", total),
            )
        }


# --- a small keep-alive HTTP/1.1 client --------------------------------------------------------


class HttpConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        reader, writer = await asyncio.open_connection(host, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes, bool]:
        """Send one request; return (status, body, whether the server closes)."""
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        close = b"\r\nconnection: close" in lower
        match = re.search(rb"\r\ncontent-length:\s*(\d+)", lower)
        if match:
            body = await self.reader.readexactly(int(match.group(1)))
        elif b"\r\ntransfer-encoding: chunked" in lower:
            body = await self._chunked()
        else:
            body, close = await self.reader.read(), True
        return status, body, close

    async def _chunked(self) -> bytes:
        parts = []
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            if size == 0:
                await self.reader.readline()
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readline()

    def close(self) -> None:
        self.writer.close()


class ConnectionPool:
    """Idle keep-alive connections are reused, most recent first; a new one is opened when
    none is idle. A connection idle for longer than ``max_idle`` is closed rather than reused,
    before the server's own keep-alive timeout (uvicorn: 5 s) can close it under a request."""

    def __init__(self, host: str, port: int, limit: int = 1000, max_idle: float = 2.0) -> None:
        self.host, self.port, self.max_idle = host, port, max_idle
        self.idle: deque[tuple[float, HttpConnection]] = deque()
        self.slots = asyncio.Semaphore(limit)
        self.opened = 0

    async def _acquire(self) -> HttpConnection:
        now = time.monotonic()
        while self.idle and now - self.idle[0][0] > self.max_idle:
            self.idle.popleft()[1].close()
        while self.idle:
            conn = self.idle.pop()[1]
            if not conn.reader.at_eof():
                return conn
            conn.close()
        self.opened += 1
        return await HttpConnection.open(self.host, self.port)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        async with self.slots:
            conn = await self._acquire()
            try:
                status, body, close = await conn.request(raw)
            except BaseException:
                conn.close()
                raise
            if close:
                conn.close()
            else:
                self.idle.append((time.monotonic(), conn))
            return status, body

    def close(self) -> None:
        for _, conn in self.idle:
            conn.close()
        self.idle.clear()


@dataclass(frozen=True)
class Target:
    name: str
    host: str
    port: int
    path: str
    api_key: str | None
    pid: int = 0

    def post(self, body: bytes) -> bytes:
        auth = f"Authorization: Bearer {self.api_key}\r\n" if self.api_key else ""
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def get(self, path: str) -> bytes:
        return f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


# --- the mix of turns (the same rules as chat_mix.lua) -----------------------------------------


class Mix:
    """About half the turns open a conversation; the others continue one that an earlier
    response named and that is not in flight, until it has had ``max_turns`` user turns."""

    def __init__(self, firsts: list[str], follows: list[str], max_turns: int, seed: int) -> None:
        self.firsts, self.follows, self.max_turns = firsts, follows, max_turns
        self.rng = random.Random(seed)
        self.open: list[str] = []
        self.turns: dict[str, int] = {}
        self.started = self.continued = self.unparsed = 0

    def next_body(self) -> bytes:
        if self.open and self.rng.random() < 0.5:
            i = self.rng.randrange(len(self.open))
            cid = self.open[i]
            self.open[i] = self.open[-1]
            self.open.pop()
            self.continued += 1
            body = {"message": self.rng.choice(self.follows), "conversation_id": cid}
        else:
            self.started += 1
            body = {"message": self.rng.choice(self.firsts)}
        return json.dumps(body).encode()

    def record(self, response: bytes) -> None:
        try:
            cid = json.loads(response)["conversation_id"]
        except (ValueError, KeyError, TypeError):
            self.unparsed += 1
            return
        n = self.turns.get(cid, 0) + 1
        if n < self.max_turns:
            self.turns[cid] = n
            self.open.append(cid)
        else:
            self.turns.pop(cid, None)


def load_turns() -> tuple[list[str], list[str]]:
    """Opening turns and follow-up turns of the dev set."""
    firsts: list[str] = []
    follows: list[str] = []
    with (SHARED / "eval" / "dev.jsonl").open() as fh:
        for line in fh:
            if line.strip():
                turns = json.loads(line)["turns"]
                firsts.append(turns[0])
                follows.extend(turns[1:])
    return firsts, follows or firsts


# --- measurements -----------------------------------------------------------------------------


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


@dataclass
class Throughput:
    requests_per_s: float
    requests: int
    seconds: float
    errors: int
    error_detail: str
    new_share: float
    p50_ms: float
    p99_ms: float
    cpu: dict[str, float] = field(default_factory=dict)


@dataclass
class Latency:
    rate: float
    seconds: float
    sent: int
    measured: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    timeouts: int
    error_detail: str
    new_share: float
    connections_opened: int
    max_send_lag_ms: float


def run_wrk(
    url: str, seconds: int, connections: int, threads: int, script_args: list[str] | None
) -> tuple[dict[str, Any], str]:
    """Run wrk; with script_args, through chat_mix.lua (its NECTAR_WRK line is returned)."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    if script_args is not None:
        argv += ["-s", str(LUA), url, "--", *script_args]
    else:
        argv += [url]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    for line in out.stdout.splitlines():
        if line.startswith("NECTAR_WRK "):
            return json.loads(line.split(" ", 1)[1]), out.stdout
    return {}, out.stdout


def wrk_throughput(
    run: Run, target: Target, args: argparse.Namespace, messages: Path
) -> Throughput:
    script = [target.path, target.api_key or "-", str(messages), str(args.max_turns)]
    url = target.url + target.path
    threads = min(args.threads, args.connections)
    run_wrk(url, args.warmup, args.connections, threads, script)
    meter = run.meter(target)
    stats, _ = run_wrk(url, args.duration, args.connections, threads, script)
    cpu = meter.stop(run.backend_pids(target))
    seconds = stats["duration_us"] / 1e6
    errs = stats["errors"]
    socket_errors = errs["connect"] + errs["read"] + errs["write"] + errs["timeout"]
    detail = ", ".join(f"{k} {v}" for k, v in errs.items() if v and k != "status")
    if stats["statuses"].strip():
        statuses = Counter(stats["statuses"].split())
        detail = ", ".join(filter(None, [detail, *(f"HTTP {s} x{n}" for s, n in statuses.items())]))
    if stats["unparsed"]:
        detail = ", ".join(filter(None, [detail, f"unparsed body {stats['unparsed']}"]))
    total = stats["started"] + stats["continued"]
    return Throughput(
        requests_per_s=round(stats["requests"] / seconds, 1),
        requests=stats["requests"],
        seconds=round(seconds, 2),
        errors=stats["non200"] + socket_errors,
        error_detail=detail,
        new_share=round(stats["started"] / total, 3) if total else 0.0,
        p50_ms=round(stats["latency_us"]["p50"] / 1000, 2),
        p99_ms=round(stats["latency_us"]["p99"] / 1000, 2),
        cpu=cpu,
    )


async def open_loop(
    target: Target, mix: Mix, rate: float, warmup: float, duration: float
) -> Latency:
    """Send ``rate`` requests/s on a fixed schedule; latency from the scheduled send time."""
    pool = ConnectionPool(target.host, target.port)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    max_lag = 0.0
    total = int(rate * (warmup + duration))
    t0 = time.perf_counter() + 0.05
    measure_from = t0 + warmup

    async def one(scheduled: float, body: bytes) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                status, response = await pool.request(target.post(body))
        except TimeoutError:
            errors["timeout"] += 1
            if scheduled >= measure_from:  # a lower bound, so the percentiles show the stall
                latencies.append(REQUEST_TIMEOUT)
            return
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            errors[type(exc).__name__] += 1
            return
        finished = time.perf_counter()
        if status != 200:
            errors[f"HTTP {status}"] += 1
        else:
            mix.record(response)
        if scheduled >= measure_from:
            latencies.append(finished - scheduled)

    tasks = []
    for i in range(total):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        max_lag = max(max_lag, time.perf_counter() - scheduled)
        tasks.append(asyncio.create_task(one(scheduled, mix.next_body())))
    await asyncio.gather(*tasks)
    pool.close()
    if not latencies:
        raise RuntimeError(f"{target.name}: no request was measured")
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    turns = mix.started + mix.continued
    return Latency(
        rate=rate,
        seconds=duration,
        sent=total,
        measured=len(ms),
        p50_ms=round(percentile(ms, 50), 2),
        p90_ms=round(percentile(ms, 90), 2),
        p99_ms=round(percentile(ms, 99), 2),
        max_ms=round(ms[-1], 2),
        errors=sum(errors.values()) + mix.unparsed,
        timeouts=errors["timeout"],
        error_detail=", ".join(f"{k} x{n}" for k, n in errors.items()),
        new_share=round(mix.started / turns, 3) if turns else 0.0,
        connections_opened=pool.opened,
        max_send_lag_ms=round(max_lag * 1000, 2),
    )


async def python_ceiling(target: Target, path: str, connections: int, seconds: float) -> float:
    """Closed loop: the most GET requests/s this client manages against a trivial route."""
    raw = target.get(path)
    count = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count
        conn = await HttpConnection.open(target.host, target.port)
        try:
            while time.perf_counter() < stop:
                status, _, _ = await conn.request(raw)
                if status != 200:
                    raise RuntimeError(f"GET {path} -> {status}")
                count += 1
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return count / (time.perf_counter() - started)


def generator_ceiling(target: Target, what: str, args: argparse.Namespace) -> dict[str, Any]:
    """Both load generators, closed loop, GET against a trivial route of ``target``."""
    threads = min(args.threads, args.connections)
    meter = CpuMeter(target.pid, [])
    _, out = run_wrk(f"{target.url}/healthz", CEILING_SECONDS, args.connections, threads, None)
    wrk_cpu = meter.stop([])
    match = re.search(r"Requests/sec:\s*([\d.]+)", out)
    meter = CpuMeter(target.pid, [])
    python_rps = run_async(python_ceiling(target, "/healthz", args.connections, CEILING_SECONDS))
    python_cpu = meter.stop([])
    return {
        "server": what,
        "connections": args.connections,
        "seconds": CEILING_SECONDS,
        "wrk_req_per_s": round(float(match.group(1)), 1) if match else None,
        "wrk_cpu": wrk_cpu,
        "python_req_per_s": round(python_rps, 1),
        "python_cpu": python_cpu,
    }


def run_async(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# --- the servers and what they run on ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Run:
    """Everything this run creates, so that it can all be removed again."""

    pg_url: str
    redis_url: str
    keep: bool
    database: str = field(default_factory=lambda: f"nectar_bench_{secrets.token_hex(4)}")
    redis_prefix: str = field(default_factory=lambda: f"nectar-bench-{secrets.token_hex(4)}")
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="nectar-bench-")))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    database_created: bool = False

    @property
    def dsn(self) -> str:
        return f"{self.pg_url.rstrip('/')}/{self.database}"

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(f"{self.pg_url.rstrip('/')}/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def backend_pids(self, target: Target) -> list[int]:
        """PIDs of the PostgreSQL backends serving ``target``: the floor app names its
        connections; every other connection to the bench database is Nectar's."""
        floor = target.name == "floor"

        async def query() -> list[int]:
            conn = await asyncpg.connect(f"{self.pg_url.rstrip('/')}/postgres")
            try:
                rows = await conn.fetch(
                    "SELECT pid, application_name = $2 AS floor FROM pg_stat_activity"
                    " WHERE datname = $1",
                    self.database,
                    FLOOR_APP_NAME,
                )
            finally:
                await conn.close()
            return [r["pid"] for r in rows if r["floor"] == floor]

        return asyncio.run(query())

    def meter(self, target: Target) -> CpuMeter:
        return CpuMeter(target.pid, self.backend_pids(target))

    def create_database(self) -> None:
        asyncio.run(self._admin(f'CREATE DATABASE "{self.database}"'))
        self.database_created = True

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.processes[name] = proc
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, name: str, url: str, timeout: float = 60.0) -> None:
        proc = self.processes[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(
            f"{name} not ready at {url} after {timeout:.0f} s:\n{self.log_tail(name)}"
        )

    def close(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.processes.items():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # still draining a backlog of requests
                print(f"{name} still running 10 s after SIGTERM; killed", file=sys.stderr)
                proc.kill()
                proc.wait()
        self.processes.clear()
        if self.keep:
            print(f"kept database {self.database} and Redis prefix {self.redis_prefix}:")
        else:
            self._drop_redis_keys()
            if self.database_created:
                asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
                self.database_created = False
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _drop_redis_keys(self) -> None:
        client = redis.Redis.from_url(self.redis_url)
        try:
            keys = list(client.scan_iter(match=f"{self.redis_prefix}:*", count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
        finally:
            client.close()


def nectar_env(run: Run) -> dict[str, str]:
    # Nectar refuses unknown NECTAR_* variables: start from an environment without any.
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("NECTAR_")}
    env.update(
        NECTAR_DATABASE_URL=run.dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
        NECTAR_REDIS_URL=run.redis_url,
        NECTAR_REDIS_PREFIX=run.redis_prefix,
        NECTAR_ADMIN_EMAIL=ADMIN_EMAIL,
        NECTAR_ADMIN_PASSWORD=ADMIN_PASSWORD,
        NECTAR_LOG_LEVEL="warning",
    )
    return env


def venv_bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def migrate(run: Run) -> None:
    out = subprocess.run(
        [venv_bin("nectar"), "db", "upgrade"],
        cwd=REPO,
        env=nectar_env(run),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"nectar db upgrade failed:\n{out.stdout}{out.stderr}")


def seed(base: str) -> tuple[str, str]:
    """Through the public API: a Honey Jar with the eval articles and a bot on it."""
    with httpx.Client(base_url=base, timeout=60) as client:

        def call(method: str, path: str, **kwargs: Any) -> Any:
            resp = client.request(method, path, **kwargs)
            if resp.status_code not in (200, 201):
                raise RuntimeError(f"{method} {path} -> {resp.status_code}: {resp.text[:500]}")
            return resp.json()

        token = call(
            "POST", "/api/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        client.headers["Authorization"] = f"Bearer {token['access_token']}"
        jar = call(
            "POST",
            "/api/honey-jars",
            json={"name": "Hivebox help center", "description": "Hivebox FAQ articles"},
        )["honey_jar"]
        articles = sorted((SHARED / "eval" / "kb").glob("*.md"))
        for path in articles:
            text = path.read_text()
            title = text.splitlines()[0].lstrip("# ").strip()
            call(
                "POST",
                f"/api/honey-jars/{jar['id']}/documents",
                json={"title": title, "content": text},
            )
        bot = call(
            "POST",
            "/api/nectar-bots",
            json={
                "name": "Hivebox Support (bench)",
                "description": "Support bot for Hivebox",
                "honey_jar_ids": [jar["id"]],
                "rate_limit_per_hour": 1_000_000_000,
                "rate_limit_per_day": 10_000_000_000,
            },
        )["bot"]
        if len(articles) != 32:
            print(f"note: loaded {len(articles)} articles (expected 32)", file=sys.stderr)
        return bot["id"], bot["api_key"]


# --- the run ----------------------------------------------------------------------------------


def bench(args: argparse.Namespace, run: Run, log: Any) -> dict[str, Any]:
    firsts, follows = load_turns()
    messages = run.workdir / "messages.tsv"
    with messages.open("w") as fh:
        for kind, texts in (("F", firsts), ("C", follows)):
            for text in texts:
                fh.write(f"{kind}\t{json.dumps(text)}\n")

    log(f"database {run.database}: creating and migrating")
    run.create_database()
    migrate(run)

    chat_port, floor_port = free_port(), free_port()
    env = nectar_env(run)
    server = run.start(
        "nectar", [venv_bin("nectar"), "serve", f"--port={chat_port}", "--no-access-log"], env
    )
    floor_env = {k: v for k, v in env.items() if not k.startswith("NECTAR_")}
    floor = run.start(
        "floor",
        [sys.executable, str(HERE / "floor_app.py"), "--dsn", run.dsn, f"--port={floor_port}"],
        floor_env,
    )
    null_port = free_port()
    null = run.start(
        "null", [sys.executable, str(HERE / "null_server.py"), f"--port={null_port}"], floor_env
    )
    null_t = Target("null", "127.0.0.1", null_port, "/", None, null.pid)
    run.wait_ready("nectar", f"http://127.0.0.1:{chat_port}/readyz")
    run.wait_ready("floor", f"http://127.0.0.1:{floor_port}/healthz")
    run.wait_ready("null", f"http://127.0.0.1:{null_port}/healthz")
    log(f"servers up: nectar pid {server.pid} :{chat_port}, floor pid {floor.pid} :{floor_port}")

    bot_id, api_key = seed(f"http://127.0.0.1:{chat_port}")
    log(f"bot {bot_id} on a Honey Jar of the eval articles")

    chat = Target(
        "chat", "127.0.0.1", chat_port, f"/api/nectar-bots/{bot_id}/chat", api_key, server.pid
    )
    floor_t = Target("floor", "127.0.0.1", floor_port, "/chat", None, floor.pid)

    # Sanity: one turn each way, so a broken setup fails here and not as a wall of errors.
    for target in (chat, floor_t):
        status, body = run_async(_one(target, json.dumps({"message": firsts[0]}).encode()))
        if status != 200:
            raise RuntimeError(f"{target.name}: first turn -> {status}: {body[:300]!r}")

    results: dict[str, Any] = {}
    log(f"load generator ceiling: wrk and the Python client, {CEILING_SECONDS} s each")
    results["generator_ceiling"] = [
        generator_ceiling(null_t, "bench/null_server.py (does nothing)", args),
        generator_ceiling(floor_t, "the floor app's constant GET /healthz", args),
    ]
    null.terminate()

    for target in (floor_t, chat):
        log(
            f"{target.name}: throughput, wrk {args.connections} connections, "
            f"{args.warmup} s warm-up + {args.duration} s"
        )
        wait_idle(target.pid)
        throughput = wrk_throughput(run, target, args, messages)
        wait_idle(target.pid)
        log(f"{target.name}: open loop at {args.rate:g} req/s, {args.warmup} s + {args.duration} s")
        mix = Mix(firsts, follows, args.max_turns, seed=args.seed)
        latency = run_async(open_loop(target, mix, args.rate, args.warmup, args.duration))
        results[target.name] = {"throughput": asdict(throughput), "latency": asdict(latency)}
    return results


async def _one(target: Target, body: bytes) -> tuple[int, bytes]:
    conn = await HttpConnection.open(target.host, target.port)
    try:
        status, response, _ = await conn.request(target.post(body))
    finally:
        conn.close()
    return status, response


# --- report -----------------------------------------------------------------------------------


def _n(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def report(summary: dict[str, Any]) -> str:
    m, r = summary["machine"], summary["results"]
    floor, chat = r["floor"], r["chat"]
    ft, ct = floor["throughput"], chat["throughput"]
    fl, cl = floor["latency"], chat["latency"]
    ratio, met = summary["chat_floor_ratio"], summary["targets_met"]
    rate = f"{summary['rate']:g} req/s"
    conns = summary["connections"]

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    rows = [
        ("", "floor", "chat", "target"),
        (
            f"throughput at {conns} conns, req/s",
            _n(ft["requests_per_s"]),
            _n(ct["requests_per_s"]),
            "",
        ),
        ("chat / floor", "", f"{ratio:.1%}", f">= 25%   {verdict(met['ratio'])}"),
        (f"p50 at {rate}, ms", f"{fl['p50_ms']:.1f}", f"{cl['p50_ms']:.1f}", ""),
        (f"p90 at {rate}, ms", f"{fl['p90_ms']:.1f}", f"{cl['p90_ms']:.1f}", ""),
        (
            f"p99 at {rate}, ms",
            f"{fl['p99_ms']:.1f}",
            f"{cl['p99_ms']:.1f}",
            f"<= 50 ms {verdict(met['p99'])}",
        ),
        (f"max at {rate}, ms", f"{fl['max_ms']:.1f}", f"{cl['max_ms']:.1f}", ""),
        (
            "errors (non-200 + socket)",
            str(ft["errors"] + fl["errors"]),
            str(ct["errors"] + cl["errors"]),
            f"0        {verdict(met['no_errors'])}",
        ),
        (
            f"wrk p50 / p99 at {conns} conns, ms",
            f"{ft['p50_ms']:.1f} / {ft['p99_ms']:.1f}",
            f"{ct['p50_ms']:.1f} / {ct['p99_ms']:.1f}",
            "",
        ),
        (
            "new conversations (wrk / open loop)",
            f"{ft['new_share']:.0%} / {fl['new_share']:.0%}",
            f"{ct['new_share']:.0%} / {cl['new_share']:.0%}",
            "",
        ),
    ]
    rows += [
        (f"cores used by {who} (wrk run)", f"{ft['cpu'][who]:.2f}", f"{ct['cpu'][who]:.2f}", "")
        for who in ("server", "postgres", "generator", "other")
    ]

    def per_request(t: dict[str, Any], who: str) -> str:
        return f"{t['cpu'][who] * 1000 / t['requests_per_s']:.2f}" if t["requests_per_s"] else "-"

    rows += [
        (f"{who} CPU per request, ms", per_request(ft, who), per_request(ct, who), "")
        for who in ("server", "postgres")
    ]
    w = [max(len(row[i]) for row in rows) for i in range(3)]
    table = [
        f"{a.ljust(w[0])}  {b.rjust(w[1])}  {c.rjust(w[2])}   {d}".rstrip() for a, b, c, d in rows
    ]
    lines = [
        "Nectar chat turn vs floor",
        f"date:    {summary['date']}",
        f"machine: {m['nproc']} CPUs, {m['cpu']}, {m['ram_gib']} GiB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}; load average at start {' '.join(map(str, m['load_average']))}",
        f"command: {summary['command']}",
        f"load:    throughput: {summary['wrk']}, {summary['threads']} threads, {conns} "
        f"connections, {summary['duration']} s after {summary['warmup']} s warm-up; latency: "
        f"open-loop Python asyncio client at {rate}, {summary['duration']} s after "
        f"{summary['warmup']} s warm-up, from the scheduled send time",
        "mix:     user turns of shared/eval/dev.jsonl, about half opening a conversation, half "
        f"continuing one (at most {summary['max_turns']} turns each)",
        "",
        *table,
        "",
        "('other': CPU used on the machine by anything but this benchmark's server, its "
        "PostgreSQL backends and the load generator)",
    ]
    for name, lat in (("floor", fl), ("chat", cl)):
        if lat["timeouts"]:
            lines.append(
                f"({lat['timeouts']} of the {name}'s open-loop requests timed out after "
                f"{REQUEST_TIMEOUT:g} s and count as {REQUEST_TIMEOUT:g} s: its percentiles "
                "are lower bounds)"
            )
    lines.append("")
    for g in r["generator_ceiling"]:
        lines += [
            f"load generator ceiling: GET, closed loop, {g['connections']} connections, "
            f"{g['seconds']} s, against {g['server']}:",
            f"  wrk            {_n(g['wrk_req_per_s'] or 0):>7} req/s  (wrk "
            f"{g['wrk_cpu']['generator']:.2f} cores, server {g['wrk_cpu']['server']:.2f}, "
            f"other {g['wrk_cpu']['other']:.2f})",
            f"  Python client  {_n(g['python_req_per_s']):>7} req/s  (client "
            f"{g['python_cpu']['generator']:.2f} cores, server {g['python_cpu']['server']:.2f}, "
            f"other {g['python_cpu']['other']:.2f})",
        ]
    errors = [
        f"  {name} {kind}: {r[name][kind]['error_detail']}"
        for name in ("floor", "chat")
        for kind in ("throughput", "latency")
        if r[name][kind]["error_detail"]
    ]
    if errors:
        lines += ["", "errors:", *errors]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=15, help="seconds measured (15)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds before measuring (3)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop requests/s (100)")
    parser.add_argument("--max-turns", type=int, default=6, help="user turns per conversation")
    parser.add_argument("--seed", type=int, default=1, help="seed of the open-loop mix")
    parser.add_argument("--keep", action="store_true", help="keep the database and Redis keys")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("NECTAR_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432"),
        help="PostgreSQL server (without a database name)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("NECTAR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        print(
            "wrk is not installed. Install it with `apt-get install -y wrk` (Debian/Ubuntu) "
            "or `brew install wrk` (macOS), then run this again.",
            file=sys.stderr,
        )
        return 2

    def log(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Clean up on Ctrl-C and on kill, also when started in the background (SIGINT ignored).
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    python = os.path.relpath(sys.executable, Path.cwd())
    command = shlex.join([python, *sys.argv])
    info = machine()
    run = Run(pg_url=args.pg_url, redis_url=args.redis_url, keep=args.keep)
    try:
        results = bench(args, run, log)
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    except (RuntimeError, OSError, asyncpg.PostgresError, redis.RedisError) as exc:
        log(f"failed: {exc}")
        return 1
    finally:
        run.close()

    floor_rps = results["floor"]["throughput"]["requests_per_s"]
    chat_rps = results["chat"]["throughput"]["requests_per_s"]
    errors = sum(
        results[name][kind]["errors"]
        for name in ("floor", "chat")
        for kind in ("throughput", "latency")
    )
    summary = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": info,
        "command": command,
        "wrk": wrk_version(),
        "threads": min(args.threads, args.connections),
        "connections": args.connections,
        "duration": args.duration,
        "warmup": args.warmup,
        "rate": args.rate,
        "max_turns": args.max_turns,
        "results": results,
        "chat_floor_ratio": round(chat_rps / floor_rps, 4) if floor_rps else 0.0,
        "errors": errors,
    }
    summary["targets_met"] = {
        "ratio": summary["chat_floor_ratio"] >= TARGET_RATIO,
        "p99": results["chat"]["latency"]["p99_ms"] <= TARGET_P99_MS,
        "no_errors": errors == 0,
    }
    print(json.dumps(summary, indent=2) if args.json else report(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
