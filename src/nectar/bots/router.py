from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from nectar.bots import service
from nectar.bots.models import BotStatus
from nectar.bots.schemas import (
    ApiKeyEnvelope,
    BotCreate,
    BotEnvelope,
    BotList,
    BotPublic,
    BotUpdate,
    BotWithKey,
    bot_public,
)
from nectar.deps import ServicesDep, SessionDep
from nectar.errors import responses
from nectar.pagination import PageDep
from nectar.users.dependencies import BotManager

router = APIRouter(prefix="/api/nectar-bots", tags=["bots"])

_ERRORS = responses(401, 403, 404, 409, 422)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=BotEnvelope, responses=_ERRORS)
async def create_bot(
    data: BotCreate, user: BotManager, session: SessionDep, services: ServicesDep
) -> BotEnvelope:
    """Create a bot. The response holds the full API key; it is never shown again."""
    bot, key = await service.create_bot(session, user, data, services.settings.nectar_bots)
    public = bot_public(bot, data.honey_jar_ids or [])
    return BotEnvelope(message="Bot created", bot=BotWithKey(**public.model_dump(), api_key=key))


@router.get("", response_model=BotList, responses=_ERRORS)
async def list_bots(
    user: BotManager,
    session: SessionDep,
    page: PageDep,
    status: BotStatus | None = None,
    search: Annotated[str | None, Query(max_length=100, description="part of the name")] = None,
) -> BotList:
    bots, pagination = await service.list_bots(session, user, page, status, search)
    jars = await service.jar_ids(session, [b.id for b in bots])
    return BotList(bots=[bot_public(b, jars[b.id]) for b in bots], pagination=pagination)


@router.get("/{bot_id}", response_model=BotPublic, responses=_ERRORS)
async def get_bot(bot_id: uuid.UUID, user: BotManager, session: SessionDep) -> BotPublic:
    bot = await service.get_bot(session, user, bot_id)
    return bot_public(bot, (await service.jar_ids(session, [bot.id]))[bot.id])


@router.put("/{bot_id}", response_model=BotEnvelope, responses=_ERRORS)
async def update_bot(
    bot_id: uuid.UUID,
    data: BotUpdate,
    user: BotManager,
    session: SessionDep,
    services: ServicesDep,
) -> BotEnvelope:
    """Change the fields sent; the others keep their values."""
    bot = await service.update_bot(session, user, bot_id, data, services.bots.changed)
    jars = await service.jar_ids(session, [bot.id])
    return BotEnvelope(message="Bot updated", bot=bot_public(bot, jars[bot.id]))


@router.delete("/{bot_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS)
async def delete_bot(
    bot_id: uuid.UUID, user: BotManager, session: SessionDep, services: ServicesDep
) -> Response:
    """Delete the bot and everything that belongs to it."""
    await service.delete_bot(session, user, bot_id, services.bots.changed)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{bot_id}/regenerate-api-key", response_model=ApiKeyEnvelope, responses=_ERRORS)
async def regenerate_api_key(
    bot_id: uuid.UUID, user: BotManager, session: SessionDep, services: ServicesDep
) -> ApiKeyEnvelope:
    """Issue a new API key; the old key stops working immediately."""
    _bot, key = await service.regenerate_api_key(session, user, bot_id, services.bots.changed)
    return ApiKeyEnvelope(message="API key regenerated", api_key=key)
