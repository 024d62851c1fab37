"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nectar.deps import ServicesDep
from nectar.errors import error_body

router = APIRouter(tags=["operations"])

REQUESTS = Counter("nectar_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "nectar_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "a dependency is unreachable"}})
async def readyz(services: ServicesDep) -> Any:
    """The database (and Redis, when configured) answer."""
    checks: dict[str, str] = {}
    try:
        async with services.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    if services.redis is not None:
        try:
            await services.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"unreachable: {type(exc).__name__}"
    failing = [name for name, state in checks.items() if state != "ok"]
    if failing:
        body = error_body("not_ready", f"{', '.join(failing)} unreachable") | {"checks": checks}
        return JSONResponse(body, status_code=503)
    return {"status": "ready", "checks": checks}


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# prometheus_client's labels() takes a lock and builds its key on every call; the few
# (method, route, status) combinations a server sees are kept here instead.
_Children = tuple[Any, Any]
_children: dict[tuple[str, str, int], _Children] = {}


def observe(method: str, route: str, status: int, seconds: float) -> None:
    """Count one request and its latency."""
    key = (method, route, status)
    children = _children.get(key)
    if children is None:
        children = _children[key] = (
            REQUESTS.labels(method, route, str(status)),
            LATENCY.labels(method, route),
        )
    children[0].inc()
    children[1].observe(seconds)


class MetricsMiddleware:
    """Counts and times requests by route template (never by raw path: ids would explode it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            observe(scope["method"], template, status, time.perf_counter() - start)
