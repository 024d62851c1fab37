"""What every request can depend on: the services container, the unit of work, the client IP."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from nectar.chat.directory import BotDirectory
from nectar.chat.responders.base import Responder
from nectar.db import session_scope
from nectar.events import EventBus
from nectar.queue import JobQueue
from nectar.ratelimit import Limiter
from nectar.settings import Settings

if TYPE_CHECKING:  # the store imports the handoff service, which imports this module
    from nectar.chat.store import TurnStore


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    limiter: Limiter
    bots: BotDirectory
    responder: Responder
    events: EventBus
    queue: JobQueue
    turns: TurnStore
    redis: Redis | None = None


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_session(services: ServicesDep) -> AsyncIterator[AsyncSession]:
    async with session_scope(services.sessions) as session:
        yield session


# scope="function": the commit happens before the response is sent, so a client that got a
# 2xx can rely on what it wrote being stored.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def client_ip(request: Request, trusted_proxies: list[str]) -> str:
    """The caller's address; X-Forwarded-For is believed only from a trusted proxy."""
    peer = request.client.host if request.client else "unknown"
    if peer in trusted_proxies:
        forwarded = request.headers.get("x-forwarded-for", "")
        # The right-most address not itself a trusted proxy is the client.
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            if hop in trusted_proxies:
                continue
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                break
    return peer


async def get_client_ip(request: Request, services: ServicesDep) -> str:
    return client_ip(request, services.settings.trusted_proxies)


ClientIPDep = Annotated[str, Depends(get_client_ip)]
