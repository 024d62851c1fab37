"""Liveness, readiness and metrics, as an operator or a load balancer sees them."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Account


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Parametrize indirectly with a dict; ``"redis": True`` means the test Redis."""
    values = dict(getattr(request, "param", {}))
    if values.pop("redis", False):
        values["redis_url"] = request.getfixturevalue("redis_url")
        values["redis_prefix"] = request.getfixturevalue("redis_prefix")
    return values


async def test_healthz(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_readyz_checks_the_database(client: httpx.AsyncClient) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"database": "ok"}}


@pytest.mark.parametrize("settings_overrides", [{"redis": True}], indirect=True)
async def test_readyz_checks_redis_when_configured(client: httpx.AsyncClient) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


@pytest.mark.parametrize(
    "settings_overrides", [{"redis_url": "redis://127.0.0.1:1/0"}], indirect=True
)
async def test_readyz_is_503_when_redis_is_unreachable(client: httpx.AsyncClient) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["error"] == "not_ready"
    assert "redis" in body["detail"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("unreachable")
    # Liveness does not depend on Redis: the process is fine, only not ready.
    assert (await client.get("/healthz")).status_code == 200


def request_count(text: str, method: str, route: str, status: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name != "nectar_http_requests":
            continue
        for sample in family.samples:
            if sample.name == "nectar_http_requests_total" and sample.labels == {
                "method": method,
                "route": route,
                "status": status,
            }:
                return float(sample.value)
    return 0.0


async def test_metrics_count_requests_by_route_template(
    client: httpx.AsyncClient, admin: Account
) -> None:
    route = "/api/nectar-bots/{bot_id}"
    before = (await client.get("/metrics")).text
    ids = [uuid.uuid4() for _ in range(3)]
    for bot_id in ids:
        r = await client.get(f"/api/nectar-bots/{bot_id}", headers=admin.headers)
        assert r.status_code == 404
    unmatched = f"/no/such/page/{uuid.uuid4()}"
    assert (await client.get(unmatched)).status_code == 404

    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    after = r.text
    assert request_count(after, "GET", route, "404") - request_count(
        before, "GET", route, "404"
    ) == pytest.approx(3)
    assert request_count(after, "GET", "/metrics", "200") >= 1
    assert "nectar_http_request_seconds_bucket" in after
    # Raw paths never become labels: ids would make the series count grow without bound.
    for raw in [*map(str, ids), unmatched]:
        assert raw not in after
    assert request_count(after, "GET", "unmatched", "404") >= 1
