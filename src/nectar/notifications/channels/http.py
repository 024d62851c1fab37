"""POSTing to a platform: the SSRF check, the timeout, and what a status code means."""

from __future__ import annotations

import email.utils
import time
from typing import Any, ClassVar, Generic, TypeVar

import httpx

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
