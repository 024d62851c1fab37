"""Running the real ``nectar`` console script in a subprocess: the CLI, the server, the worker."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

HOST = "127.0.0.1"
NECTAR = Path(sys.executable).with_name("nectar")
if not NECTAR.exists():  # tests run by a Python outside the virtualenv
    NECTAR = Path(shutil.which("nectar") or "nectar")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def nectar_env(**values: str) -> dict[str, str]:
    """This environment without any NECTAR_* variable of the developer's, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("NECTAR_")}
    env.update(values)
    return env


def run_nectar(
    *args: str, env: dict[str, str], cwd: Path, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``nectar ARGS`` to completion; stdin is empty (never a terminal) unless given."""
    return subprocess.run(  # noqa: S603 - our own console script, fixed arguments
        [str(NECTAR), *args],
        env=env,
        cwd=cwd,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then SIGKILL if it does not exit within 10 s. Returns the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(timeout=10)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def output(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def serving(env: dict[str, str], workdir: Path, wait: float = 15.0) -> Iterator[Server]:
    """``nectar serve`` on a free port of 127.0.0.1, ready when /healthz answers; always stopped."""
    port = free_port()
    log = workdir / f"serve-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603
            [str(NECTAR), "serve", "--host", HOST, "--port", str(port)],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        server = Server(process, f"http://{HOST}:{port}", log)
        try:
            _wait_healthy(server, wait)
            yield server
        finally:
            stop(process)


def _wait_healthy(server: Server, wait: float) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(
                f"nectar serve exited with {server.process.returncode}:\n{server.output()}"
            )
        try:
            if httpx.get(f"{server.base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"nectar serve not healthy after {wait} s:\n{server.output()}")
