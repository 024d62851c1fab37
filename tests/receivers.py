"""A real HTTP receiver on 127.0.0.1 that records requests and answers as scripted.

Stands in for a remote SaaS endpoint (Slack, PagerDuty, Zendesk...): a test gives it a
``check`` function that enforces what the real service requires (auth, payload shape) and
scripts failures (status codes, Retry-After, slowness) to exercise retries.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Scripted:
    status: int = 200
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


# A check returns None to accept the request, or (status, body) to refuse it as the real
# service would (e.g. 401 for a missing token, 400 for a malformed payload).
Check = Callable[[Recorded], tuple[int, Any] | None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Receiver:
    def __init__(self, check: Check | None = None, default: Scripted | None = None) -> None:
        self.requests: list[Recorded] = []
        self.refused: list[tuple[Recorded, Any]] = []
        self.check = check
        self.default = default or Scripted()
        self._script: deque[Scripted] = deque()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.arrived = asyncio.Event()

    def then(
        self,
        status: int = 200,
        body: Any = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        times: int = 1,
    ) -> Receiver:
        """Answer the next ``times`` accepted requests like this (then the default again)."""
        for _ in range(times):
            self._script.append(
                Scripted(status, {} if body is None else body, headers or {}, delay)
            )
        return self

    async def _app(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        recorded = Recorded(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
        )
        refusal = self.check(recorded) if self.check else None
        if refusal is not None:
            self.refused.append((recorded, refusal[1]))
            await JSONResponse(refusal[1], status_code=refusal[0])(scope, receive, send)
            return
        self.requests.append(recorded)
        self.arrived.set()
        answer = self._script.popleft() if self._script else self.default
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if isinstance(answer.body, (dict, list)):
            response: Response = JSONResponse(answer.body, answer.status, answer.headers)
        else:
            response = Response(str(answer.body), answer.status, answer.headers)
        await response(scope, receive, send)

    async def start(self) -> Receiver:
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            # A bound method is not recognised as ASGI 3 by inspection.
            interface="asgi3",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(250):
            if self._server.started:
                return self
            await asyncio.sleep(0.02)
        raise RuntimeError("receiver did not start")

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, 10)

    async def __aenter__(self) -> Receiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for(self, count: int, within: float = 10.0) -> list[Recorded]:
        """Until ``count`` accepted requests have arrived (at most ``within`` seconds)."""
        async with asyncio.timeout(within):
            while len(self.requests) < count:
                self.arrived.clear()
                if len(self.requests) >= count:
                    break
                await self.arrived.wait()
        return self.requests
