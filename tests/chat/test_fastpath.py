"""The chat turn's own way in (nectar.chat.fastpath): what a client sees must be what the
framework's route answers, whichever of the two serves the request."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from nectar.chat.fastpath import ChatFastPath
from nectar.chat.models import Message
from nectar.chat.responders.base import Answer, Question
from tests.chat.test_chat_api import key_headers, make_jar
from tests.helpers import assert_error, create_bot
from tests.test_ops import request_count

MAX_BODY = 2048
ROUTE = "/api/nectar-bots/{bot_id}/chat"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"max_body_bytes": MAX_BODY}


@pytest.fixture
async def bot(client: httpx.AsyncClient, admin: Any) -> dict[str, Any]:
    jar_id = await make_jar(client, admin)
    return await create_bot(client, admin, honey_jar_ids=[jar_id])


async def stored_messages(db: Any) -> int:
    async with db.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(Message))).scalar())


def body(message: str, **extra: Any) -> bytes:
    return json.dumps({"message": message, **extra}).encode()


async def send(
    client: httpx.AsyncClient,
    bot: dict[str, Any],
    message: str,
    content_type: str = "application/json",
    bot_id: str | None = None,
) -> httpx.Response:
    return await client.post(
        f"/api/nectar-bots/{bot_id or bot['id']}/chat",
        content=body(message),
        headers={**key_headers(bot), "Content-Type": content_type},
    )


async def test_turns_and_refusals_are_counted_under_the_route_template(
    client: httpx.AsyncClient, bot: dict
) -> None:
    path = f"/api/nectar-bots/{bot['id']}/chat"
    before = (await client.get("/metrics")).text
    for _ in range(2):
        r = await client.post(
            path, json={"message": "how do I reset my password?"}, headers=key_headers(bot)
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-ratelimit-limit"]
    r = await client.post(
        path, json={"message": "hi"}, headers={"Authorization": "Bearer nb_wrong"}
    )
    assert_error(r, 401, "invalid_api_key")
    assert r.headers["www-authenticate"] == "Bearer"
    r = await client.post(
        path,
        content=b'{"message": ',
        headers={**key_headers(bot), "Content-Type": "application/json"},
    )
    assert_error(r, 422, "validation_error")  # FastAPI's words, through the framework
    after = (await client.get("/metrics")).text

    def counted(status: str) -> float:
        return request_count(after, "POST", ROUTE, status) - request_count(
            before, "POST", ROUTE, status
        )

    assert (counted("200"), counted("401"), counted("422")) == (2, 1, 1)


async def test_oversize_chat_bodies_are_413_with_or_without_content_length(
    client: httpx.AsyncClient, bot: dict, db: Any
) -> None:
    path = f"/api/nectar-bots/{bot['id']}/chat"
    too_big = body("x" * MAX_BODY)
    headers = {**key_headers(bot), "Content-Type": "application/json"}
    r = await client.post(path, content=too_big, headers=headers)
    assert f"{MAX_BODY} bytes" in assert_error(r, 413, "payload_too_large")["detail"]

    async def streamed() -> AsyncIterator[bytes]:
        for start in range(0, len(too_big), 500):
            yield too_big[start : start + 500]

    r = await client.post(path, content=streamed(), headers=headers)
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "payload_too_large")

    async def fits() -> AsyncIterator[bytes]:  # several chunks, under the limit
        whole = body("how do I reset my password?")
        for start in range(0, len(whole), 7):
            yield whole[start : start + 7]

    r = await client.post(path, content=fits(), headers=headers)
    assert r.status_code == 200, r.text
    assert await stored_messages(db) == 2


@pytest.mark.parametrize(
    ("content_type", "status"),
    [("text/plain", 422), ("application/x-www-form-urlencoded", 422)],
)
async def test_other_content_types_get_the_frameworks_answer(
    client: httpx.AsyncClient, bot: dict, db: Any, content_type: str, status: int
) -> None:
    r = await send(client, bot, "how do I reset my password?", content_type)
    assert_error(r, status)
    assert await stored_messages(db) == 0


async def test_json_with_a_charset_and_an_upper_case_bot_id_are_served(
    client: httpx.AsyncClient, bot: dict
) -> None:
    r = await send(
        client,
        bot,
        "how do I reset my password?",
        "application/json; charset=utf-8",
        bot_id=str(bot["id"]).upper(),
    )
    assert r.status_code == 200, r.text
    assert "Forgot password" in r.json()["reply"]


async def test_an_unknown_bot_id_is_401_and_a_malformed_one_422(
    client: httpx.AsyncClient, bot: dict
) -> None:
    r = await send(client, bot, "hi", bot_id=str(uuid.uuid4()))
    assert_error(r, 401, "invalid_api_key")  # the key is not this bot's
    r = await send(client, bot, "hi", bot_id="not-a-uuid")
    assert_error(r, 422, "validation_error")


class Broken:
    async def answer(self, question: Question) -> Answer:
        raise RuntimeError("boom")

    async def aclose(self) -> None:
        pass


async def test_a_bug_in_the_turn_is_a_logged_500_in_the_error_shape(
    app: Any, client: httpx.AsyncClient, bot: dict, caplog: pytest.LogCaptureFixture
) -> None:
    app.state.services.responder = Broken()
    with caplog.at_level(logging.ERROR, logger="nectar.errors"):
        r = await client.post(
            f"/api/nectar-bots/{bot['id']}/chat",
            json={"message": "my card 4111 1111 1111 1111 was charged twice"},
            headers=key_headers(bot),
        )
    assert_error(r, 500, "internal_error")
    logged = [rec for rec in caplog.records if "unhandled error" in rec.getMessage()]
    assert len(logged) == 1
    assert f"/api/nectar-bots/{bot['id']}/chat" in logged[0].getMessage()
    assert "4111" not in caplog.text  # the path is logged, never the body


async def test_a_valid_turn_never_reaches_the_framework_and_the_rest_all_do(
    app: Any, bot: dict, db: Any
) -> None:
    """ChatFastPath alone, before a stand-in for FastAPI that records what reaches it."""
    reached: list[bytes] = []

    async def framework(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        reached.append(message.get("body", b""))
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    path = ChatFastPath(framework, max_bytes=MAX_BODY)

    async def post(content: bytes, content_type: bytes = b"application/json") -> int:
        scope = {
            "type": "http",
            "method": "POST",
            "path": f"/api/nectar-bots/{bot['id']}/chat",
            "headers": [
                (b"content-type", content_type),
                (b"authorization", f"Bearer {bot['api_key']}".encode()),
            ],
            "app": app,
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": content, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await path(scope, receive, send)
        return int(sent[0]["status"])

    assert await post(body("how do I reset my password?")) == 200
    assert reached == []
    assert await stored_messages(db) == 2
    assert await post(b'{"message": ') == 418  # FastAPI's to answer, with the body it was sent
    assert await post(body("hi"), b"text/plain") == 418
    assert reached == [b'{"message": ', body("hi")]


async def test_the_app_serves_a_valid_turn_before_the_framework_and_hands_on_the_rest(
    app: Any, client: httpx.AsyncClient, bot: dict, db: Any
) -> None:
    """In the app itself: a valid turn never enters FastAPI's middleware stack (its error
    page, telemetry and body-limit layers and ours), anything else does."""
    await client.get("/healthz")  # the stack is built on first use
    stack = app.middleware_stack
    assert stack is not None
    entered: list[str] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        entered.append(scope["path"])
        await stack(scope, receive, send)

    app.middleware_stack = recording
    try:
        assert (await send(client, bot, "how do I reset my password?")).status_code == 200
        assert entered == []
        assert await stored_messages(db) == 2
        r = await send(client, bot, "hi", content_type="text/plain")
        assert r.status_code == 422
        assert entered == [f"/api/nectar-bots/{bot['id']}/chat"]
    finally:
        app.middleware_stack = stack
