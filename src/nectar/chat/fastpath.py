"""The chat turn's own way in: ``POST /api/nectar-bots/{bot_id}/chat`` with a valid JSON body
goes from the server straight to the turn, past the framework's routing and middleware.

The turn is the request a deployment makes thousands of times a minute, and FastAPI's layers
around it (route matching through the included routers, the middleware chain, dependency
solving, the endpoint wrapper) cost a fifth of its CPU. Everything else, and every chat
request this path does not take as it is, goes through FastAPI unchanged, the body already
read handed over as it came: a body that is not JSON of the right shape gets FastAPI's own
422, an oversized one the body limit's 413, another content type FastAPI's answer. Errors of
the turn itself are rendered by the same functions as the app's exception handlers
(``nectar.errors.render``) and the request is counted in the same metrics; the route in the
OpenAPI document is the router's (``nectar.chat.router.chat``), which this path mirrors.
"""

from __future__ import annotations

import re
import time
import uuid

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nectar.chat.router import key_from, keyed_turn
from nectar.chat.schemas import ChatRequest
from nectar.errors import render
from nectar.observability import observe

ROUTE = "/api/nectar-bots/{bot_id}/chat"
_PATH = re.compile(r"/api/nectar-bots/([0-9A-Fa-f-]{32,36})/chat")
_JSON = re.compile(rb"application/json\s*(;.*)?", re.IGNORECASE)


class ChatFastPath:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        taken = self._take(scope)
        if taken is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        bot_id, headers = taken
        body, messages = await self._read(receive)
        request = _valid(body)
        if request is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        try:
            key = key_from(_text(headers.get(b"authorization")), _text(headers.get(b"x-api-key")))
            response = await keyed_turn(scope["app"].state.services, bot_id, key, request)
        except Exception as exc:
            response = render(exc, "POST", scope["path"])
        await response(scope, receive, send)
        observe("POST", ROUTE, response.status_code, time.perf_counter() - started)

    def _take(self, scope: Scope) -> tuple[uuid.UUID, dict[bytes, bytes]] | None:
        """The bot id and the headers of a chat turn this path serves; None for the rest."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        match = _PATH.fullmatch(scope["path"])
        if match is None:
            return None
        try:
            bot_id = uuid.UUID(match[1])
        except ValueError:
            return None
        # Lower-case names; of a repeated header the first counts, as in Request.headers.
        headers = {name: value for name, value in reversed(scope["headers"])}
        content_type = headers.get(b"content-type")
        length = headers.get(b"content-length")
        if content_type is None or _JSON.fullmatch(content_type) is None:
            return None
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return None  # the body limit's 413, without reading the body
        return bot_id, headers

    async def _read(self, receive: Receive) -> tuple[bytes | None, list[Message]]:
        """The whole body, or None (too large, or the client left) with what was received,
        for FastAPI to take over."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return None, messages
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return None, messages
            if not message.get("more_body", False):
                break
        if len(messages) == 1:
            return messages[0].get("body", b""), messages
        return b"".join(m.get("body", b"") for m in messages), messages


def _valid(body: bytes | None) -> ChatRequest | None:
    if body is None:
        return None
    try:
        return ChatRequest.model_validate_json(body)
    except ValidationError:
        return None  # FastAPI words the 422


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")  # as Starlette decodes headers


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
