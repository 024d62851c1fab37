"""POSTing to a platform: the SSRF check, the timeout, what a status code means, and the
shared client's transport (few connections, gated)."""

from __future__ import annotations

import base64
import email.utils
import functools
import time
from typing import Any, ClassVar, Generic, TypeVar

import httpx

from nectar.notifications.channels.asyncio_net import AsyncioBackend
from nectar.notifications.channels.base import DeliveryFailed, SendResult
from nectar.notifications.channels.connections import GatedPool
from nectar.notifications.netguard import NetGuard

RETRIABLE_STATUS = {408, 425, 429}
MAX_RETRY_AFTER = 3600.0
KEEPALIVE_SECONDS = 5.0  # httpx's default: an idle connection is closed after this


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, when.timestamp() - time.time()))


def check_response(response: httpx.Response, what: str) -> SendResult:
    """2xx is success; 3xx is not followed and fails; 408/429/5xx may be retried; any other
    4xx fails for good (retrying will not change the answer)."""
    status = response.status_code
    if 200 <= status < 300:
        return SendResult(status_code=status)
    body = response.text[:300].replace("\n", " ")
    if status in RETRIABLE_STATUS or status >= 500:
        raise DeliveryFailed(
            f"{what} answered {status}: {body}",
            retriable=True,
            status_code=status,
            retry_after=retry_after(response),
        )
    raise DeliveryFailed(f"{what} answered {status}: {body}", retriable=False, status_code=status)


def basic_auth(username: str, password: str) -> dict[str, str]:
    """The Authorization header of HTTP Basic auth, as httpx.BasicAuth would send it."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


@functools.lru_cache(maxsize=256)
def _parsed(url: str) -> httpx.URL:
    """A URL parsed once: a worker calls the same few again and again (httpx's URLs are
    immutable; an invalid one raises httpx.InvalidURL and is not kept)."""
    return httpx.URL(url)


async def request(
    client: httpx.AsyncClient,
    guard: NetGuard,
    method: str,
    url: str,
    what: str,
    *,
    content: bytes | None = None,
    json: Any = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Send one request and read its body, mapping transport failures to retriable
    DeliveryFailed. Redirects are not followed (a redirect to an internal address would bypass
    the SSRF check).

    The request goes straight to the client's transport with the client's headers and
    timeout: httpx.AsyncClient.send's pipeline (auth flow, redirect handling, cookie jar,
    event hooks) is none of it wanted here and cost a busy worker a tenth of its CPU. So no
    cookie a platform sets is kept or sent to anyone, and credentials go as headers
    (``basic_auth``)."""
    await guard.check(url)
    if client.is_closed:
        raise RuntimeError("the HTTP client is closed")
    if headers:
        merged = client.headers.copy()
        merged.update(headers)
    else:
        merged = client.headers
    outgoing = httpx.Request(
        method,
        _parsed(url),
        content=content,
        json=json,
        params=params or None,
        headers=merged,
        extensions={"timeout": client.timeout.as_dict()},
    )
    # Mounted transports (none on ours) are the client's, by URL; httpx is pinned.
    transport = client._transport_for_url(outgoing.url)
    try:
        response = await transport.handle_async_request(outgoing)
        response.request = outgoing
        try:
            await response.aread()
        except BaseException:
            await response.aclose()  # gives the connection (and the gate's slot) back
            raise
    except httpx.TimeoutException:
        raise DeliveryFailed(f"{what} timed out", retriable=True) from None
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{what}: {type(exc).__name__}: {exc}", retriable=True) from None
    return response


async def post_json(
    client: httpx.AsyncClient,
    guard: NetGuard,
    url: str,
    payload: Any,
    what: str,
    headers: dict[str, str] | None = None,
) -> tuple[httpx.Response, SendResult]:
    response = await request(client, guard, "POST", url, what, json=payload, headers=headers)
    return response, check_response(response, what)


ConfigT = TypeVar("ConfigT")


class HttpChannel(Generic[ConfigT]):
    """What every channel that calls a platform over HTTP has: its config section, the
    process's one HTTP client (owned and closed by the registry) and the SSRF guard."""

    external: ClassVar[bool] = True

    def __init__(self, config: ConfigT, *, client: httpx.AsyncClient, guard: NetGuard) -> None:
        self._config = config
        self._client = client
        self._guard = guard

    async def aclose(self) -> None:
        """Nothing to release: the HTTP client belongs to the registry."""


class GatedTransport(httpx.AsyncBaseTransport):
    """httpx's transport (its requests, responses and errors) on the worker's own
    connections: at most ``size`` requests on the wire at once, the others waiting their
    turn for as long as the client's pool timeout allows (see ``connections``), on asyncio's
    own streams (see ``asyncio_net``)."""

    def __init__(self, size: int) -> None:
        self._transport = httpx.AsyncHTTPTransport()
        self.pool = GatedPool(
            size,
            ssl_context=httpx.create_ssl_context(),
            keepalive_expiry=KEEPALIVE_SECONDS,
            network_backend=AsyncioBackend(),
        )
        # httpx is pinned: its transport only ever calls handle_async_request and aclose on
        # its pool (it is never entered as a context manager here).
        self._transport._pool = self.pool  # type: ignore[assignment]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        await self._transport.aclose()
