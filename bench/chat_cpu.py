"""Server CPU per chat turn, one request at a time: a figure that holds on a busy machine.

    .venv/bin/python bench/chat_cpu.py [--turns 2000] [--profile FILE] [--keep]
                                       [--callgrind FILE [--turns 300]]

Same stack and setup as bench/chat_turn.py (PostgreSQL + Redis, `nectar serve` with one
uvicorn worker, the 32 eval articles, the dev set's turns, about half opening a conversation),
but the turns are sent one after another over one keep-alive connection. What it reports is
the server's own CPU time (user + system, from /proc) and PostgreSQL's, divided by the turns,
and how the turns ended (answered, handed off, relayed to a human). Throughput on one core is
roughly 1000 / (server CPU per turn in ms) requests/s; this is the figure to watch while
optimising the hot path, because wall-clock throughput on two shared cores moves with
whatever else runs. With --profile, py-spy records the server during the measured turns
(raw collapsed stacks, for flamegraph.pl or a quick script).

With --callgrind, the server runs under valgrind's callgrind, collecting only during the
measured turns, and the figure is the server's instructions per turn: the same for the same
code and inputs whatever else the machine is doing, so two versions can be compared while
other work runs (about 50 times slower: a few hundred turns are enough). FILE is callgrind's
output, for callgrind_annotate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from chat_turn import Mix, load_turns
from common import (
    CpuMeter,
    HttpConnection,
    Run,
    add_service_arguments,
    create_bot,
    free_port,
    interrupt_on_signals,
    machine,
    migrate,
    nectar_env,
    post_request,
    venv_bin,
    wait_idle,
)


async def drive(
    port: int, path: str, api_key: str, mix: Mix, turns: int
) -> tuple[Counter[str], list[float]]:
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    conn = await HttpConnection.open("127.0.0.1", port)
    try:
        for _ in range(turns):
            body = mix.next_body()
            started = time.perf_counter()
            status, response, _ = await conn.request(
                post_request("127.0.0.1", port, path, body, api_key)
            )
            latencies.append((time.perf_counter() - started) * 1000)
            if status != 200:
                outcomes[f"HTTP {status}"] += 1
                continue
            mix.record(response)
            data = json.loads(response)
            if data.get("handoff") and data.get("handled_by") == "human":
                opened = data.get("reply") is not None
                outcomes["handed off" if opened else "relayed to a human"] += 1
            else:
                outcomes["answered"] += 1
    finally:
        conn.close()
    return outcomes, latencies


def _valgrind(out: str) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        sys.executable,
    ]


def _collect(pid: int, on: bool) -> None:
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(pid)], check=True)


def _instructions(path: str) -> int:
    # "totals:" is the sum over the whole run ("summary:" stays 0 when collection starts late).
    for line in reversed(Path(path).read_text().splitlines()):
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=2000, help="measured turns (2000)")
    parser.add_argument("--warmup", type=int, default=300, help="turns before measuring (300)")
    parser.add_argument("--max-turns", type=int, default=6, help="user turns per conversation")
    parser.add_argument(
        "--no-handoff", action="store_true", help="a bot with handoff_enabled false"
    )
    parser.add_argument(
        "--no-knowledge",
        action="store_true",
        help="a bot without Honey Jars: the turn without search and answer, its fixed cost",
    )
    parser.add_argument("--cprofile", help="run the server under cProfile, stats to this file")
    parser.add_argument("--native", action="store_true", help="with --profile: C frames too")
    parser.add_argument("--profile", help="record the server with py-spy into this raw file")
    parser.add_argument(
        "--callgrind", help="run the server under callgrind, its output to this file"
    )
    add_service_arguments(parser)
    args = parser.parse_args()
    interrupt_on_signals()
    run = Run(args.pg_url, args.redis_url, args.keep)
    try:
        run.create_database()
        migrate(run)
        port = free_port()
        server = run.start(
            "nectar",
            [
                *([sys.executable, "-m", "cProfile", "-o", args.cprofile] if args.cprofile else []),
                *(_valgrind(args.callgrind) if args.callgrind else []),
                venv_bin("nectar"),
                "serve",
                f"--port={port}",
                "--no-access-log",
            ],
            nectar_env(run),
        )
        base = f"http://127.0.0.1:{port}"
        run.wait_ready("nectar", base + "/healthz", timeout=600 if args.callgrind else 60)
        bot_id, api_key = create_bot(
            base,
            name="CPU bench bot",
            knowledge=not args.no_knowledge,
            **({"handoff_enabled": False} if args.no_handoff else {}),
        )
        path = f"/api/nectar-bots/{bot_id}/chat"
        firsts, follows = load_turns()
        mix = Mix(firsts, follows, args.max_turns, seed=7)
        asyncio.run(drive(port, path, api_key, mix, args.warmup))
        wait_idle(server.pid)
        profiler = None
        if args.profile:
            profiler = subprocess.Popen(
                [
                    venv_bin("py-spy"),
                    "record",
                    "-p",
                    str(server.pid),
                    "-f",
                    "raw",
                    "-r",
                    "500",
                    "-o",
                    args.profile,
                    "--nonblocking",
                    *(["--native"] if args.native else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
        backends = [pid for pid, _ in run.backends()]
        meter = CpuMeter({"server": [server.pid], "postgres": backends})
        if args.callgrind:
            _collect(server.pid, True)
        started = time.perf_counter()
        outcomes, latencies = asyncio.run(drive(port, path, api_key, mix, args.turns))
        seconds = time.perf_counter() - started
        cpu = meter.stop({"postgres": [pid for pid, _ in run.backends()]})
        if args.callgrind:
            _collect(server.pid, False)
        if profiler is not None:
            profiler.send_signal(2)
            profiler.wait(30)
        latencies.sort()
        result: dict[str, Any] = {
            "machine": machine(),
            "turns": args.turns,
            "outcomes": dict(outcomes),
            "server_cpu_ms_per_turn": round(cpu["server"] * seconds * 1000 / args.turns, 3),
            "postgres_cpu_ms_per_turn": round(cpu["postgres"] * seconds * 1000 / args.turns, 3),
            "latency_p50_ms": round(latencies[len(latencies) // 2], 2),
            "latency_p99_ms": round(latencies[int(len(latencies) * 0.99)], 2),
        }
        if args.callgrind:
            # callgrind writes its counts when the process ends.
            server.send_signal(signal.SIGINT)
            server.wait(600)
            result["server_instructions_per_turn"] = _instructions(args.callgrind) // args.turns
        print(json.dumps(result, indent=2))
        if args.cprofile:
            # uvicorn re-raises SIGTERM after shutting down, which ends the process before
            # cProfile writes; SIGINT surfaces as KeyboardInterrupt, and the stats are saved.
            server.send_signal(signal.SIGINT)
            server.wait(60)
    finally:
        run.close()


if __name__ == "__main__":
    main()
