"""What the benchmarks in bench/ share: the machine, CPU accounting, a small keep-alive HTTP
client, percentiles, and a ``Run`` that owns everything a benchmark creates (a fresh
PostgreSQL database, Redis keys under a unique prefix, server and worker processes) so that
it is all removed again, also on Ctrl-C and on kill.

Not a module of the service: the scripts next to it import it as ``common`` (a script's own
directory is first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path(os.environ.get("NECTAR_BENCH_SHARED", REPO.parent / "shared"))
ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "bench-" + secrets.token_urlsafe(12)
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
        "load_average": load_average(),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def command_line() -> str:
    """How this benchmark was started, for the report."""
    python = os.path.relpath(sys.executable, Path.cwd())
    return shlex.join([python, *sys.argv])


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def interrupt_on_signals() -> None:
    """Turn Ctrl-C and kill into KeyboardInterrupt, also when started in the background
    (where SIGINT is ignored), so that ``finally`` blocks clean up."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
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


# --- CPU accounting (who used the cores during a measurement) ----------------------------------


def proc_cpu(pid: int) -> float:
    """CPU seconds a process has used, or 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> float:
    """CPU seconds all cores have spent busy since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def wait_idle(pid: int, timeout: float = 30.0, busy: float = 0.05) -> float:
    """Wait until a process has worked off what an earlier phase left queued (it uses under
    ``busy`` of a core for a quarter of a second); return the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        before = proc_cpu(pid)
        time.sleep(0.25)
        if proc_cpu(pid) - before < busy * 0.25:
            break
    return time.perf_counter() - started


class CpuMeter:
    """Cores used during an interval by named groups of processes (e.g. the server, its
    PostgreSQL backends), by the load generator (this process and the children it waited
    for, e.g. wrk), and by everything else on the machine ("other")."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.t0 = time.perf_counter()
        self.start = {pid: proc_cpu(pid) for pids in groups.values() for pid in pids}
        self.machine0 = machine_busy()
        self.children0 = self._children()
        self.self0 = time.process_time()

    @staticmethod
    def _children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def stop(self, groups: dict[str, list[int]] | None = None) -> dict[str, float]:
        """Cores per group; ``groups`` may name pids that appeared meanwhile (a process
        unknown at the start counts from 0)."""
        wall = time.perf_counter() - self.t0
        now = {**self.groups, **(groups or {})}
        used = {
            name: sum(proc_cpu(pid) - self.start.get(pid, 0.0) for pid in pids)
            for name, pids in now.items()
        }
        used["generator"] = (self._children() - self.children0) + (time.process_time() - self.self0)
        total = machine_busy() - self.machine0
        used["other"] = max(0.0, total - sum(used.values()))
        used["total"] = total
        return {name: round(value / wall, 2) for name, value in used.items()}


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


def post_request(host: str, port: int, path: str, body: bytes, api_key: str | None) -> bytes:
    """The raw bytes of a JSON POST (with a bearer key when given)."""
    auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


# --- figures ----------------------------------------------------------------------------------


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


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


def venv_bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


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
    # Called before the database is dropped: removes Redis keys that do not carry the
    # prefix (arq's own job keys are named by job id alone).
    before_drop: list[Callable[[], None]] = field(default_factory=list)

    @property
    def dsn(self) -> str:
        return f"{self.pg_url.rstrip('/')}/{self.database}"

    async def admin(self, sql: str) -> None:
        conn = await asyncpg.connect(f"{self.pg_url.rstrip('/')}/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def backends(self) -> list[tuple[int, str]]:
        """(pid, application_name) of every PostgreSQL backend connected to the database."""

        async def query() -> list[tuple[int, str]]:
            conn = await asyncpg.connect(f"{self.pg_url.rstrip('/')}/postgres")
            try:
                rows = await conn.fetch(
                    "SELECT pid, application_name FROM pg_stat_activity WHERE datname = $1",
                    self.database,
                )
            finally:
                await conn.close()
            return [(r["pid"], r["application_name"]) for r in rows]

        return list(asyncio.run(query()))

    def create_database(self) -> None:
        asyncio.run(self.admin(f'CREATE DATABASE "{self.database}"'))
        self.database_created = True

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.processes[name] = proc
        return proc

    def stop(self, name: str, timeout: float = 10.0) -> None:
        """SIGTERM one process and wait for it (SIGKILL after ``timeout`` s)."""
        proc = self.processes.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # still draining a backlog
            print(f"{name} still running {timeout:g} s after SIGTERM; killed", file=sys.stderr)
            proc.kill()
            proc.wait()

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self, name: str) -> None:
        proc = self.processes[name]
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def wait_ready(self, name: str, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive(name)
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
        for name in list(self.processes):
            self.stop(name)
        if self.keep:
            print(f"kept database {self.database} and Redis prefix {self.redis_prefix}:")
        else:
            for callback in self.before_drop:
                try:
                    callback()
                except (OSError, asyncpg.PostgresError, redis.RedisError) as exc:
                    print(f"cleanup step failed: {exc}", file=sys.stderr)
            self.drop_redis_keys(f"{self.redis_prefix}:*")
            if self.database_created:
                asyncio.run(self.admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
                self.database_created = False
        shutil.rmtree(self.workdir, ignore_errors=True)

    def drop_redis_keys(self, pattern: str) -> int:
        client = redis.Redis.from_url(self.redis_url)
        try:
            keys = list(client.scan_iter(match=pattern, count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
        finally:
            client.close()
        return len(keys)


def nectar_env(run: Run, **extra: str) -> dict[str, str]:
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
    env.update(extra)
    return env


def migrate(run: Run, env: dict[str, str] | None = None) -> None:
    out = subprocess.run(
        [venv_bin("nectar"), "db", "upgrade"],
        cwd=REPO,
        env=env or nectar_env(run),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"nectar db upgrade failed:\n{out.stdout}{out.stderr}")


def create_bot(base: str, *, name: str, knowledge: bool = True, **fields: Any) -> tuple[str, str]:
    """Through the public API: sign in as the seeded admin, optionally load the 32 articles
    of shared/eval/kb into a Honey Jar, and create a bot (on it) with limits high enough
    never to be hit. Returns (bot id, bot API key)."""
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
        jar_ids: list[str] = []
        if knowledge:
            jar = call(
                "POST",
                "/api/honey-jars",
                json={"name": "Hivebox help center", "description": "Hivebox FAQ articles"},
            )["honey_jar"]
            jar_ids.append(jar["id"])
            articles = sorted((SHARED / "eval" / "kb").glob("*.md"))
            for path in articles:
                text = path.read_text()
                title = text.splitlines()[0].lstrip("# ").strip()
                call(
                    "POST",
                    f"/api/honey-jars/{jar['id']}/documents",
                    json={"title": title, "content": text},
                )
            if len(articles) != 32:
                print(f"note: loaded {len(articles)} articles (expected 32)", file=sys.stderr)
        bot = call(
            "POST",
            "/api/nectar-bots",
            json={
                "name": name,
                "description": "Support bot for Hivebox",
                "honey_jar_ids": jar_ids,
                "rate_limit_per_hour": 1_000_000_000,
                "rate_limit_per_day": 10_000_000_000,
                **fields,
            },
        )["bot"]
        return bot["id"], bot["api_key"]


def drop_job_keys(run: Run) -> None:
    """The arq job keys of this run's deliveries: arq names them by job id alone
    (arq:job:<delivery id>), outside the run's prefix, and with no worker running they would
    stay in Redis for a day (a chat_turn run leaves thousands)."""

    async def ids() -> list[str]:
        conn = await asyncpg.connect(run.dsn)
        try:
            rows = await conn.fetch("SELECT id::text FROM notification_deliveries")
        finally:
            await conn.close()
        return [r[0] for r in rows]

    if not run.database_created:
        return
    keys = [f"arq:job:{i}" for i in asyncio.run(ids())]
    client = redis.Redis.from_url(run.redis_url)
    try:
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()
