"""The configured channels, built once per process with one shared HTTP client."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from nectar.config import NectarBotsConfig
from nectar.events import EventBus
from nectar.notifications.channels.base import Channel
from nectar.notifications.channels.email import EmailChannel
from nectar.notifications.channels.http import GatedTransport
from nectar.notifications.channels.in_app import InAppChannel
from nectar.notifications.netguard import NetGuard

# At most this many requests of a worker process on the wire at once; more wait their turn
# (see channels/connections.py: few connections, each reused). Ten keep a busy worker
# cheap (with 50 jobs at once, a local POST cost 40% fewer instructions than through httpx's
# default pool) and still allow 20 to 50 deliveries a second to platforms that take 200-500
# ms to answer; more workers for more.
HTTP_CONNECTIONS = 10


class Channels:
    def __init__(self, channels: dict[str, Channel], client: httpx.AsyncClient | None) -> None:
        self._channels = channels
        self._client = client

    def get(self, name: str) -> Channel | None:
        return self._channels.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self._channels)

    async def aclose(self) -> None:
        for channel in self._channels.values():
            await channel.aclose()
        if self._client is not None:
            await self._client.aclose()


def build_channels(
    config: NectarBotsConfig,
    sessions: async_sessionmaker[AsyncSession],
    events: EventBus,
) -> Channels:
    """Every channel the config enables (in_app always; email when a notification type)."""
    notifications = config.handoff.notifications
    integrations = config.handoff.integrations
    channels: dict[str, Channel] = {"in_app": InAppChannel(sessions, events)}
    if "email" in notifications.notification_types:
        channels["email"] = EmailChannel(notifications.email)
    client: httpx.AsyncClient | None = None
    if config.handoff.mode == "enterprise_external":
        client = httpx.AsyncClient(
            timeout=notifications.delivery.timeout_seconds,
            follow_redirects=False,
            headers={"User-Agent": "Nectar-Notifications/1"},
            transport=GatedTransport(HTTP_CONNECTIONS),
        )
        guard = NetGuard(integrations.allow_private_hosts)
        kwargs: dict[str, Any] = {"client": client, "guard": guard}
        for name, factory in _platforms().items():
            section = getattr(integrations, name)
            if section.is_active:
                channels[name] = factory(section, **kwargs)
    return Channels(channels, client)


def _platforms() -> dict[str, Any]:
    from nectar.notifications.channels.pagerduty import PagerDutyChannel
    from nectar.notifications.channels.servicenow import ServiceNowChannel
    from nectar.notifications.channels.slack import SlackChannel
    from nectar.notifications.channels.teams import TeamsChannel
    from nectar.notifications.channels.webhook import WebhookChannel
    from nectar.notifications.channels.zendesk import ZendeskChannel

    return {
        "slack": SlackChannel,
        "teams": TeamsChannel,
        "pagerduty": PagerDutyChannel,
        "zendesk": ZendeskChannel,
        "servicenow": ServiceNowChannel,
        "webhook": WebhookChannel,
    }
