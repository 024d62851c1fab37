from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sse_starlette.sse import EventSourceResponse

from nectar.chat import service, stream
from nectar.chat.schemas import ChatRequest, ChatResponse, MessageList, PublicBot
from nectar.deps import ClientIPDep, Services, ServicesDep
from nectar.errors import responses

router = APIRouter(prefix="/api/nectar-bots", tags=["chat"])

_bearer = HTTPBearer(auto_error=False, scheme_name="BotApiKey", description="nb_… API key")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="BotApiKeyHeader")


async def api_key(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> str | None:
    """The bot's key from `Authorization: Bearer nb_…` or `X-API-Key: nb_…`."""
    return bearer.credentials if bearer else header


ApiKey = Annotated[str | None, Depends(api_key)]
_CHAT_ERRORS = responses(401, 403, 404, 413, 422, 429)


# The chat endpoint reads its key and services straight from the request and serialises its
# own response: FastAPI's dependency solving and response-model pass cost a noticeable share
# of a turn. The documented security and response model are the same as the other routes'.
_KEY_SECURITY: dict[str, Any] = {"security": [{"BotApiKey": []}, {"BotApiKeyHeader": []}]}


def key_from(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key of ``Authorization: Bearer nb_…``, else of ``X-API-Key``."""
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return x_api_key


def chat_response(result: ChatResponse, limits: service.Limits) -> Response:
    return Response(
        result.model_dump_json(), media_type="application/json", headers=limits.headers()
    )


@router.post(
    "/{bot_id}/chat",
    response_model=ChatResponse,
    responses=_CHAT_ERRORS,
    openapi_extra=_KEY_SECURITY,
)
async def chat(bot_id: uuid.UUID, request: ChatRequest, http: Request) -> Response:
    """Send the user's message; get the bot's answer, or a handoff to a human.

    Authenticate with `Authorization: Bearer nb_…` or `X-API-Key: nb_…`. Every response
    carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds
    until the tighter of the hourly and daily windows resets).
    """
    key = key_from(http.headers.get("authorization"), http.headers.get("x-api-key"))
    return await keyed_turn(http.app.state.services, bot_id, key, request)


async def keyed_turn(
    services: Services, bot_id: uuid.UUID, key: str | None, request: ChatRequest
) -> Response:
    """The turn behind this route and behind nectar.chat.fastpath alike."""
    bot, limits = await service.admit_key(services, bot_id, key)
    result = await service.handle_turn(services, bot, request, services.responder)
    return chat_response(result, limits)


@router.get(
    "/{bot_id}/conversations/{conversation_id}/messages",
    response_model=MessageList,
    responses=responses(401, 403, 404, 422),
)
async def messages(
    bot_id: uuid.UUID,
    conversation_id: uuid.UUID,
    key: ApiKey,
    services: ServicesDep,
    after: Annotated[uuid.UUID | None, Query(description="only messages after this one")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
) -> MessageList:
    """The conversation so far: user, bot and agent messages, oldest first."""
    bot = await service.authenticate_key(services, bot_id, key)
    return await service.list_messages(services.engine, bot, conversation_id, after, limit)


_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "text/event-stream: one `message` event per message (id = message id)",
        "content": {"text/event-stream": {}},
    }
}


@router.get(
    "/{bot_id}/conversations/{conversation_id}/stream",
    responses={**responses(401, 403, 404, 422), **_STREAM_DOC},
    response_class=EventSourceResponse,
)
async def follow(
    bot_id: uuid.UUID,
    conversation_id: uuid.UUID,
    key: ApiKey,
    services: ServicesDep,
    after: Annotated[uuid.UUID | None, Query(description="start after this message")] = None,
    last_event_id: Annotated[uuid.UUID | None, Header()] = None,
) -> EventSourceResponse:
    """Live: messages after `after` (or the `Last-Event-ID` of a reconnect), then every new
    message (bot, agent or system) as it is stored."""
    bot = await service.authenticate_key(services, bot_id, key)
    await service.check_conversation(services.engine, bot, conversation_id)
    after_seq = await stream.seq_of(services, conversation_id, last_event_id or after)
    return EventSourceResponse(stream.follow(services, conversation_id, after_seq), ping=15)


@router.get("/public/{slug}", response_model=PublicBot, responses=responses(403, 404))
async def public_info(slug: str, services: ServicesDep) -> PublicBot:
    """A public bot's name and description (no key needed)."""
    bot = await service.public_info(services, slug)
    return PublicBot(slug=slug, name=bot.name, description=bot.description)


@router.post("/public/{slug}/chat", response_model=ChatResponse, responses=_CHAT_ERRORS)
async def public_chat(
    slug: str, request: ChatRequest, services: ServicesDep, ip: ClientIPDep
) -> Response:
    """Chat with a public bot without a key; the bot's limits apply per client IP."""
    bot, limits = await service.admit_public(services, slug, ip)
    result = await service.handle_turn(services, bot, request, services.responder, "public")
    return chat_response(result, limits)


@router.get(
    "/public/{slug}/conversations/{conversation_id}/messages",
    response_model=MessageList,
    responses=responses(404, 422),
)
async def public_messages(
    slug: str,
    conversation_id: uuid.UUID,
    services: ServicesDep,
    after: Annotated[uuid.UUID | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
) -> MessageList:
    """A public conversation, readable by whoever holds its (unguessable) id."""
    bot = await service.public_info(services, slug)
    return await service.list_messages(
        services.engine, bot, conversation_id, after, limit, public=True
    )


@router.get(
    "/public/{slug}/conversations/{conversation_id}/stream",
    responses={**responses(404, 422), **_STREAM_DOC},
    response_class=EventSourceResponse,
)
async def public_follow(
    slug: str,
    conversation_id: uuid.UUID,
    services: ServicesDep,
    after: Annotated[uuid.UUID | None, Query()] = None,
    last_event_id: Annotated[uuid.UUID | None, Header()] = None,
) -> EventSourceResponse:
    """The live stream of a public conversation (whoever holds its id may follow it)."""
    bot = await service.public_info(services, slug)
    await service.check_conversation(services.engine, bot, conversation_id, public=True)
    after_seq = await stream.seq_of(services, conversation_id, last_event_id or after)
    return EventSourceResponse(stream.follow(services, conversation_id, after_seq), ping=15)
