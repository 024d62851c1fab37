"""POSTing to a platform: the SSRF check, the timeout, what a status code means, and the gate
that keeps the shared client's connection pool small."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, Generic, TypeVar

import httpcore
import httpx

from nectar.notifications.channels.asyncio_net import AsyncioBackend
from nectar.notifications.channels.base import DeliveryFailed, SendResult
from nectar.notifications.netguard import NetGuard

RETRIABLE_STATUS = {408, 425, 429}
MAX_RETRY_AFTER = 3600.0


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


async def request(
    client: httpx.AsyncClient,
    guard: NetGuard,
    method: str,
    url: str,
    what: str,
    **kwargs: Any,
) -> httpx.Response:
    """Send, mapping transport failures to retriable DeliveryFailed. Redirects are not
    followed (a redirect to an internal address would bypass the SSRF check)."""
    await guard.check(url)
    try:
        return await client.request(method, url, follow_redirects=False, **kwargs)
    except httpx.TimeoutException:
        raise DeliveryFailed(f"{what} timed out", retriable=True) from None
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{what}: {type(exc).__name__}: {exc}", retriable=True) from None


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
    """At most ``size`` requests on the wire at once; the others wait here, in turn, for as
    long as the client's pool timeout allows.

    httpcore (1.0.x) does work on every request start and end that grows with the square of
    its open connections and with the requests queued inside it (it walks them all), and it
    closes an idle connection whenever more than ``max_keepalive_connections`` are open. A
    worker runs many jobs at once: waiting here keeps httpcore's pool small and all of it
    alive, and a local POST then costs the worker a fraction of the CPU."""

    def __init__(self, size: int) -> None:
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        self._transport = httpx.AsyncHTTPTransport(limits=limits)
        # The pool httpx builds (its TLS context and limits), on asyncio's own streams rather
        # than anyio's (see asyncio_net).
        self._transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=size,
            max_keepalive_connections=size,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=AsyncioBackend(),
        )
        self._slots = asyncio.Semaphore(size)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._slots.locked():
            wait = request.extensions.get("timeout", {}).get("pool")
            try:
                async with asyncio.timeout(wait):
                    await self._slots.acquire()
            except TimeoutError:
                raise httpx.PoolTimeout("no connection became free", request=request) from None
        else:
            await self._slots.acquire()  # a free slot: taken at once, no timer needed
        try:
            response = await self._transport.handle_async_request(request)
        except BaseException:
            self._slots.release()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Releasing(response.stream, self._slots.release)
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()


class _Releasing(httpx.AsyncByteStream):
    """A response body that gives its slot back once it is closed (read to the end or not)."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()
