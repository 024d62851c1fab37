"""Benchmark the chat turn against the floor of its stack, in one run.

    .venv/bin/python bench/chat_turn.py [--duration 15] [--rounds 5] [--connections 50]
                                        [--rate 100] [--keep] [--json]

It creates a fresh PostgreSQL database, migrates it with `nectar db upgrade`, starts the real
server (`nectar serve`: one uvicorn worker, uvloop, httptools, no access log) on PostgreSQL and
Redis, and through the public API signs in, loads the 32 articles of shared/eval/kb into a
Honey Jar and creates a bot on it. Beside it runs bench/floor_app.py (the same stack reduced to
a validated body and one INSERT through a raw asyncpg pool). Both get the same load: user turns
from shared/eval/dev.jsonl, about half starting a conversation and half continuing one.

Two measurements per app:
  throughput  wrk (bench/chat_mix.lua), closed loop, --connections for --duration s after a
              warm-up, in --rounds segments alternating floor and chat, so that both see the
              same drift of the machine's speed. Before that, both generators (wrk and the
              Python client) are run against a constant GET route to show what the generator
              itself can drive.
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
import json
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import redis
from common import (
    HERE,
    SHARED,
    ConnectionPool,
    CpuMeter,
    HttpConnection,
    Run,
    add_service_arguments,
    command_line,
    create_bot,
    drop_job_keys,
    free_port,
    interrupt_on_signals,
    log,
    machine,
    migrate,
    nectar_env,
    percentile,
    post_request,
    run_async,
    venv_bin,
    wait_idle,
)

LUA = HERE / "chat_mix.lua"
FLOOR_APP_NAME = "nectar-bench-floor"  # floor_app.APPLICATION_NAME
TARGET_RATIO = 0.25
TARGET_P99_MS = 50.0
CEILING_SECONDS = 5
REQUEST_TIMEOUT = 10.0


def wrk_version() -> str:
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).split("Copyright")[0].strip()


@dataclass(frozen=True)
class Target:
    name: str
    host: str
    port: int
    path: str
    api_key: str | None
    pid: int = 0

    def post(self, body: bytes) -> bytes:
        return post_request(self.host, self.port, self.path, body, self.api_key)

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


def _wrk_script(target: Target, args: argparse.Namespace, messages: Path) -> list[str]:
    return [target.path, target.api_key or "-", str(messages), str(args.max_turns)]


def wrk_warmup(target: Target, args: argparse.Namespace, messages: Path) -> None:
    threads = min(args.threads, args.connections)
    script = _wrk_script(target, args, messages)
    run_wrk(target.url + target.path, args.warmup, args.connections, threads, script)


def wrk_throughput(
    run: Run, target: Target, args: argparse.Namespace, messages: Path, seconds: int
) -> Throughput:
    """One measured wrk segment of ``seconds``."""
    script = _wrk_script(target, args, messages)
    url = target.url + target.path
    threads = min(args.threads, args.connections)
    meter = CpuMeter({"server": [target.pid], "postgres": backend_pids(run, target)})
    stats, _ = run_wrk(url, seconds, args.connections, threads, script)
    cpu = meter.stop({"postgres": backend_pids(run, target)})
    measured = stats["duration_us"] / 1e6
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
        requests_per_s=round(stats["requests"] / measured, 1),
        requests=stats["requests"],
        seconds=round(measured, 2),
        errors=stats["non200"] + socket_errors,
        error_detail=detail,
        new_share=round(stats["started"] / total, 3) if total else 0.0,
        p50_ms=round(stats["latency_us"]["p50"] / 1000, 2),
        p99_ms=round(stats["latency_us"]["p99"] / 1000, 2),
        cpu=cpu,
    )


def combined(rounds: list[Throughput]) -> Throughput:
    """The rounds of one app as one measurement: requests over seconds, cores weighted by
    time, the median round's p50 and the worst round's p99."""
    seconds = sum(r.seconds for r in rounds)
    requests = sum(r.requests for r in rounds)
    p50s = sorted(r.p50_ms for r in rounds)
    return Throughput(
        requests_per_s=round(requests / seconds, 1),
        requests=requests,
        seconds=round(seconds, 2),
        errors=sum(r.errors for r in rounds),
        error_detail=", ".join(filter(None, (r.error_detail for r in rounds))),
        new_share=round(sum(r.new_share * r.requests for r in rounds) / requests, 3)
        if requests
        else 0.0,
        p50_ms=p50s[len(p50s) // 2],
        p99_ms=max(r.p99_ms for r in rounds),
        cpu={
            who: round(sum(r.cpu[who] * r.seconds for r in rounds) / seconds, 2)
            for who in rounds[0].cpu
        },
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
    meter = CpuMeter({"server": [target.pid]})
    _, out = run_wrk(f"{target.url}/healthz", CEILING_SECONDS, args.connections, threads, None)
    wrk_cpu = meter.stop()
    match = re.search(r"Requests/sec:\s*([\d.]+)", out)
    meter = CpuMeter({"server": [target.pid]})
    python_rps = run_async(python_ceiling(target, "/healthz", args.connections, CEILING_SECONDS))
    python_cpu = meter.stop()
    return {
        "server": what,
        "connections": args.connections,
        "seconds": CEILING_SECONDS,
        "wrk_req_per_s": round(float(match.group(1)), 1) if match else None,
        "wrk_cpu": wrk_cpu,
        "python_req_per_s": round(python_rps, 1),
        "python_cpu": python_cpu,
    }


def backend_pids(run: Run, target: Target) -> list[int]:
    """PIDs of the PostgreSQL backends serving ``target``: the floor app names its
    connections; every other connection to the bench database is Nectar's."""
    floor = target.name == "floor"
    return [pid for pid, app in run.backends() if (app == FLOOR_APP_NAME) == floor]


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

    run.before_drop.append(lambda: drop_job_keys(run))
    bot_id, api_key = create_bot(f"http://127.0.0.1:{chat_port}", name="Hivebox Support (bench)")
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

    # Throughput in interleaved rounds (floor, chat, floor, chat, ...): this machine's speed
    # drifts over a minute (other tenants of the host), and two back-to-back 15 s runs of the
    # floor alone have differed by a third; alternating puts both apps under the same drift.
    segment = max(1, round(args.duration / args.rounds))
    for target in (floor_t, chat):
        log(f"{target.name}: wrk warm-up, {args.connections} connections, {args.warmup} s")
        wait_idle(target.pid)
        wrk_warmup(target, args, messages)
    rounds: dict[str, list[Throughput]] = {"floor": [], "chat": []}
    for number in range(1, args.rounds + 1):
        for target in (floor_t, chat):
            log(f"{target.name}: throughput round {number}/{args.rounds}, {segment} s")
            wait_idle(target.pid)
            rounds[target.name].append(wrk_throughput(run, target, args, messages, segment))
    for target in (floor_t, chat):
        wait_idle(target.pid)
        log(f"{target.name}: open loop at {args.rate:g} req/s, {args.warmup} s + {args.duration} s")
        mix = Mix(firsts, follows, args.max_turns, seed=args.seed)
        latency = run_async(open_loop(target, mix, args.rate, args.warmup, args.duration))
        results[target.name] = {
            "throughput": asdict(combined(rounds[target.name])),
            "latency": asdict(latency),
        }
    results["rounds"] = [
        {
            "floor": f.requests_per_s,
            "chat": c.requests_per_s,
            "ratio": round(c.requests_per_s / f.requests_per_s, 4) if f.requests_per_s else 0.0,
        }
        for f, c in zip(rounds["floor"], rounds["chat"], strict=True)
    ]
    results["chat"]["counted_in_redis"] = counted_in_redis(run, bot_id)
    return results


def counted_in_redis(run: Run, bot_id: str) -> int:
    """The bot's turns in Redis's daily rate-limit windows: proof that the limits were
    counted there, not in-process after a silent fall-back (which is cheaper)."""
    client = redis.Redis.from_url(run.redis_url)
    try:
        keys = list(client.scan_iter(match=f"{run.redis_prefix}:rl:chat:{bot_id}:d:*"))
        return sum(int(v or 0) for v in client.mget(keys)) if keys else 0
    finally:
        client.close()


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
        (
            f"chat / floor by round ({len(r['rounds'])})",
            "",
            " ".join(f"{x['ratio']:.1%}" for x in r["rounds"]),
            "",
        ),
        (
            "floor / chat req/s by round",
            " ".join(f"{x['floor']:,.0f}" for x in r["rounds"]),
            " ".join(f"{x['chat']:,.0f}" for x in r["rounds"]),
            "",
        ),
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
    rows.append(
        (
            "chat turns counted by the Redis limiter",
            "",
            f"{chat['counted_in_redis']:,}",
            f">= {ct['requests'] + cl['sent']:,} {verdict(met['redis_limits'])}",
        )
    )
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
        f"connections, {summary['duration']} s after {summary['warmup']} s warm-up, in "
        f"{summary['rounds']} rounds alternating floor and chat; latency: "
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
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="throughput: floor and chat alternate in this many rounds of duration/rounds s",
    )
    parser.add_argument("--warmup", type=int, default=3, help="seconds before measuring (3)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop requests/s (100)")
    parser.add_argument("--max-turns", type=int, default=6, help="user turns per conversation")
    parser.add_argument("--seed", type=int, default=1, help="seed of the open-loop mix")
    add_service_arguments(parser)
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        print(
            "wrk is not installed. Install it with `apt-get install -y wrk` (Debian/Ubuntu) "
            "or `brew install wrk` (macOS), then run this again.",
            file=sys.stderr,
        )
        return 2

    # Clean up on Ctrl-C and on kill, also when started in the background (SIGINT ignored).
    interrupt_on_signals()
    command = command_line()
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
        "rounds": args.rounds,
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
        # Every measured turn (and the warm-ups) went through the Redis limiter.
        "redis_limits": results["chat"]["counted_in_redis"]
        >= results["chat"]["throughput"]["requests"] + results["chat"]["latency"]["sent"],
    }
    print(json.dumps(summary, indent=2) if args.json else report(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
