"""The OpenAI-compatible responder against a real HTTP server on 127.0.0.1.

The server below checks what the real chat completions API requires (path, bearer key, JSON
body with a model and system/user/assistant messages, no unknown parameters) and answers in
the real response shape, optionally with token log-probabilities. Each test scripts how it
behaves: slow, failing, rejecting ``logprobs``, malformed, and so on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from nectar.chat.responders.base import Answer, HistoryItem, Question
from nectar.chat.responders.openai import CONTEXT_CHARS, FALLBACK, OpenAIResponder
from nectar.config import OpenAIConfig
from nectar.knowledge.search import Hit
from tests.helpers import create_bot

KEY = "sk-test-7f3a9c1e5b2d4680aa"
MODEL = "test-model"
ROLES = {"system", "user", "assistant"}
# Request parameters of the real API that this responder may send.
KNOWN_PARAMS = {
    "model",
    "messages",
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "logprobs",
    "top_logprobs",
    "n",
    "stop",
    "stream",
    "seed",
    "top_p",
    "user",
}
SYSTEM_PROMPT = "You are Hivebox's support assistant. Be friendly."


# --- the server -------------------------------------------------------------------------------


@dataclass
class Script:
    """How the server answers the next requests."""

    text: str = "Choose Forgot password on the sign-in page; the link works for 30 minutes [1]."
    # Every token's log-probability; None = the server never returns log-probabilities.
    token_logprob: float | None = -0.02
    reject_logprobs: bool = False
    status: int = 200
    delay: float = 0.0
    raw_body: str | None = None  # sent verbatim with status 200
    choices: list[Any] | None = None  # replaces the generated choices
    finish_reason: str = "stop"
    require_key: bool = True


def api_error(status: int, message: str, param: str | None = None) -> JSONResponse:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    }
    return JSONResponse(body, status_code=status)


@dataclass
class FakeOpenAI:
    port: int = 0
    script: Script = field(default_factory=Script)
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> Response:
            script = self.script
            raw = await request.body()
            entry: dict[str, Any] = {"headers": dict(request.headers), "json": None}
            self.requests.append(entry)
            if script.delay:
                await asyncio.sleep(script.delay)
            if script.require_key and request.headers.get("authorization") != f"Bearer {KEY}":
                given = request.headers.get("authorization", "")
                # Echo what was sent, as careless servers do: the responder must not log it.
                return api_error(401, f"Incorrect API key provided: {given}")
            if not request.headers.get("content-type", "").startswith("application/json"):
                return api_error(400, "Content-Type must be application/json")
            try:
                body = json.loads(raw)
            except ValueError:
                return api_error(400, "We could not parse the JSON body of your request.")
            entry["json"] = body
            problem = validate(body)
            if problem:
                return api_error(400, *problem)
            if script.reject_logprobs and "logprobs" in body:
                return api_error(400, "logprobs is not supported by this model", "logprobs")
            if script.status != 200:
                return api_error(script.status, f"scripted failure {script.status}")
            if script.raw_body is not None:
                return Response(script.raw_body, media_type="application/json")
            return JSONResponse(completion(body, script))

        return app


def validate(body: Any) -> tuple[str, str] | None:
    """What the real API rejects with a 400."""
    if not isinstance(body, dict):
        return "body must be an object", "body"
    unknown = set(body) - KNOWN_PARAMS
    if unknown:
        return f"Unrecognized request argument supplied: {sorted(unknown)[0]}", sorted(unknown)[0]
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter", "model"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages must be a non-empty array", "messages"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"messages[{i}].role must be system, user or assistant", "messages"
        if not isinstance(message.get("content"), str):
            return f"messages[{i}].content must be a string", "messages"
    temperature = body.get("temperature", 1)
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        return "temperature must be between 0 and 2", "temperature"
    max_tokens = body.get("max_tokens", 1)
    if not isinstance(max_tokens, int) or max_tokens < 1:
        return "max_tokens must be a positive integer", "max_tokens"
    if not isinstance(body.get("logprobs", False), bool):
        return "logprobs must be a boolean", "logprobs"
    return None


def completion(body: dict[str, Any], script: Script) -> dict[str, Any]:
    tokens = re.findall(r"\s*\S+", script.text)
    logprobs = None
    if body.get("logprobs") and script.token_logprob is not None:
        logprobs = {
            "content": [
                {
                    "token": token,
                    "logprob": script.token_logprob,
                    "bytes": list(token.encode()),
                    "top_logprobs": [],
                }
                for token in tokens
            ],
            "refusal": None,
        }
    choices = [
        {
            "index": 0,
            "message": {"role": "assistant", "content": script.text, "refusal": None},
            "logprobs": logprobs,
            "finish_reason": script.finish_reason,
        }
    ]
    prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": script.choices if script.choices is not None else choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens + len(tokens),
        },
        "system_fingerprint": "fp_test",
    }


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def openai_server() -> Iterator[FakeOpenAI]:
    """The server runs in its own thread and event loop, like any other process would."""
    fake = FakeOpenAI()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    fake.port = sock.getsockname()[1]
    config = uvicorn.Config(fake.app(), log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test OpenAI server did not start"
        time.sleep(0.01)
    try:
        yield fake
    finally:
        server.should_exit = True
        server.force_exit = True  # do not wait for handlers still sleeping for a timeout test
        thread.join(10)
        sock.close()


@pytest.fixture
def openai(openai_server: FakeOpenAI) -> FakeOpenAI:
    openai_server.script = Script()
    openai_server.requests = []
    return openai_server


MakeResponder = Callable[..., OpenAIResponder]


@pytest.fixture
async def make_responder(openai: FakeOpenAI) -> AsyncIterator[MakeResponder]:
    made: list[OpenAIResponder] = []

    def make(**overrides: Any) -> OpenAIResponder:
        values: dict[str, Any] = {
            "base_url": openai.base_url,
            "api_key": KEY,
            "model": MODEL,
            "timeout_seconds": 2.0,
        }
        values.update(overrides)
        responder = OpenAIResponder(OpenAIConfig(**values))
        made.append(responder)
        return responder

    yield make
    for responder in made:
        await responder.aclose()


# --- questions --------------------------------------------------------------------------------

DOC = uuid.uuid4()
JAR = uuid.uuid4()


def hit(title: str, heading: str, body: str, score: float = 5.0, doc: uuid.UUID = DOC) -> Hit:
    return Hit(1, doc, JAR, title, heading, body, score)


PASSWORD = hit(
    "Resetting your password",
    "Forgot your password",
    "On the sign-in page choose Forgot password. We email you a reset link; the link works "
    "for 30 minutes.",
)
BILLING = hit(
    "Invoices and billing",
    "Downloading invoices",
    "Invoices are under Settings > Billing. Each invoice can be downloaded as a PDF.",
    score=2.0,
    doc=uuid.uuid4(),
)


def question(
    message: str = "How do I reset my password?",
    passages: list[Hit] | None = None,
    history: list[HistoryItem] | None = None,
) -> Question:
    return Question(
        bot_name="Hivebox",
        system_prompt=SYSTEM_PROMPT,
        message=message,
        history=history or [],
        passages=[PASSWORD, BILLING] if passages is None else passages,
    )


def assert_failure(answer: Answer, reason: str) -> None:
    assert answer.confidence == 0.0, answer
    assert answer.text == FALLBACK
    assert answer.sources == []
    assert answer.error is not None
    assert reason in answer.error, answer.error


# --- the request ------------------------------------------------------------------------------


async def test_request_carries_what_the_api_requires(
    openai: FakeOpenAI, make_responder: MakeResponder
) -> None:
    history = [
        HistoryItem("user", "Hi, I can't sign in."),
        HistoryItem("bot", "Sorry to hear that. What happens when you try?", 0.7),
        HistoryItem("system", "handoff resolved"),
        HistoryItem("agent", "I'm Sam from support; try resetting your password."),
    ]
    answer = await make_responder(temperature=0.1, max_tokens=300).answer(question(history=history))
    assert answer.error is None, answer

    [sent] = openai.requests
    assert sent["headers"]["authorization"] == f"Bearer {KEY}"
    body = sent["json"]
    assert body["model"] == MODEL
    assert body["temperature"] == 0.1
    assert body["max_tokens"] == 300
    assert body["logprobs"] is True
    roles = [m["role"] for m in body["messages"]]
    # History: user -> user, bot and agent -> assistant (merged: one speaker), system dropped.
    assert roles == ["system", "user", "assistant", "user"]
    system, *turns = body["messages"]
    assert system["content"].startswith(SYSTEM_PROMPT)
    assert "only" in system["content"]
    assert "don't know" in system["content"]
    assert "[1] Resetting your password > Forgot your password" in system["content"]
    assert "link works for 30 minutes" in system["content"]
    assert "[2] Invoices and billing > Downloading invoices" in system["content"]
    assert turns[0]["content"] == "Hi, I can't sign in."
    assert "What happens when you try?" in turns[1]["content"]
    assert "I'm Sam from support" in turns[1]["content"]
    assert turns[2]["content"] == "How do I reset my password?"


async def test_history_is_limited_to_the_configured_number_of_messages(
    openai: FakeOpenAI, make_responder: MakeResponder
) -> None:
    history = [HistoryItem("user" if i % 2 == 0 else "bot", f"message {i}") for i in range(10)]
    await make_responder(history_messages=3).answer(question(history=history))
    await make_responder(history_messages=0).answer(question(history=history))
    limited, none = (r["json"]["messages"] for r in openai.requests)
    # The last three are 7 (bot), 8 (user), 9 (bot); what the model gets starts with the user.
    assert [m["content"] for m in limited[1:]] == [
        "message 8",
        "message 9",
        "How do I reset my password?",
    ]
    assert [m["role"] for m in none] == ["system", "user"]


async def test_passages_are_capped_in_size(
    openai: FakeOpenAI, make_responder: MakeResponder
) -> None:
    many = [hit(f"Article {i}", f"Section {i}", f"word{i} " * 400) for i in range(30)]
    answer = await make_responder().answer(question(passages=many))
    assert answer.error is None
    system = openai.requests[0]["json"]["messages"][0]["content"]
    assert "[1] Article 0 > Section 0" in system
    assert "Article 29" not in system
    assert len(system) < CONTEXT_CHARS + 2000


async def test_no_api_key_sends_no_authorization_header(
    openai: FakeOpenAI, make_responder: MakeResponder
) -> None:
    openai.script.require_key = False  # Ollama and llama.cpp need none
    answer = await make_responder(api_key=None).answer(question())
    assert answer.error is None
    assert "authorization" not in openai.requests[0]["headers"]


# --- confidence -------------------------------------------------------------------------------


async def test_confident_tokens_give_a_high_confidence_and_cited_sources(
    openai: FakeOpenAI, make_responder: MakeResponder
) -> None:
    openai.script.token_logprob = -0.01
    answer = await make_responder().answer(question())
    assert answer.error is None
    assert answer.text == (
        "Choose Forgot password on the sign-in page; the link works for 30 minutes."
    )
    assert answer.confidence > 0.8
    # The model cited passage 1 only.
    assert [(s.document_id, s.title, s.heading) for s in answer.sources] == [
        (PASSWORD.document_id, PASSWORD.title, PASSWORD.heading)
    ]


async def test_uncertain_tokens_give_a_lower_confidence(
    openai: FakeOpenAI, make_responder: MakeResponder
) -> None:
    responder = make_responder()
    openai.script.token_logprob = -0.01
    sure = await responder.answer(question())
    openai.script.token_logprob = -1.2  # each token ~30 % likely
    unsure = await responder.answer(question())
    assert unsure.error is None
    assert unsure.confidence < 0.5 < sure.confidence
    assert unsure.text == sure.text


async def test_without_logprobs_confidence_comes_from_retrieval_evidence(
    openai: FakeOpenAI, make_responder: MakeResponder
) -> None:
    openai.script.token_logprob = None  # the server ignores the parameter
    openai.script.text = "Choose Forgot password on the sign-in page."
    responder = make_responder()
    covered = await responder.answer(question("How do I reset my password?"))
    off_topic = await responder.answer(
        question("Can I pay by bank transfer in euros?", passages=[PASSWORD])
    )
    assert covered.error is None
    assert off_topic.error is None
    assert covered.confidence >= 0.7
    assert off_topic.confidence < 0.5
    # No citation in the reply: every passage the model saw is a source.
    assert {s.document_id for s in covered.sources} == {PASSWORD.document_id, BILLING.document_id}


async def test_server_rejecting_logprobs_is_retried_without_and_remembered(
    openai: FakeOpenAI, make_responder: MakeResponder
) -> None:
    openai.script.reject_logprobs = True
    responder = make_responder()
    answer = await responder.answer(question())
    assert answer.error is None
    assert 0.6 < answer.confidence <= 1.0
    assert ["logprobs" in r["json"] for r in openai.requests] == [True, False]

    await responder.answer(question())
    assert len(openai.requests) == 3
    assert "logprobs" not in openai.requests[2]["json"]


async def test_a_400_for_another_reason_is_a_failure_and_not_remembered(
    openai: FakeOpenAI, make_responder: MakeResponder
) -> None:
    openai.script.status = 400
    responder = make_responder()
    assert_failure(await responder.answer(question()), "400")
    openai.script.status = 200
    answer = await responder.answer(question())
    assert answer.error is None
    assert openai.requests[-1]["json"]["logprobs"] is True


async def test_logprobs_off_in_config_are_not_asked_for(
    openai: FakeOpenAI, make_responder: MakeResponder
) -> None:
    answer = await make_responder(logprobs=False).answer(question())
    assert answer.error is None
    assert "logprobs" not in openai.requests[0]["json"]


@pytest.mark.parametrize(
    "reply",
    [
        "I don't know. The passages only cover passwords and invoices.",
        "I'm not sure, sorry.",
        "I cannot find anything about bank transfers in the passages.",
        "The passages don\u2019t contain information about bank transfers.",
        "Sorry, the provided documentation does not mention bank transfers.",
        "Unfortunately, that is not covered in the passages.",
    ],
)
async def test_a_refusal_is_low_confidence_even_when_fluent(
    openai: FakeOpenAI, make_responder: MakeResponder, reply: str
) -> None:
    openai.script.text = reply
    openai.script.token_logprob = -0.01
    answer = await make_responder().answer(question("Can I pay by bank transfer?"))
    assert answer.error is None
    assert answer.text == reply
    assert answer.confidence <= 0.1
    assert answer.sources == []

    openai.script.token_logprob = None
    answer = await make_responder().answer(question("Can I pay by bank transfer?"))
    assert answer.confidence <= 0.1


async def test_a_partial_answer_that_hedges_is_marked_down(
    openai: FakeOpenAI, make_responder: MakeResponder
) -> None:
    openai.script.token_logprob = None
    openai.script.text = "Invoices are under Settings > Billing."
    full = await make_responder().answer(question("Where are my invoices?"))
    openai.script.text = (
        "Invoices are under Settings > Billing. The passages don't say whether older ones are kept."
    )
    hedged = await make_responder().answer(question("Where are my invoices?"))
    assert 0.1 < hedged.confidence < full.confidence


async def test_no_passages_means_low_confidence(
    openai: FakeOpenAI, make_responder: MakeResponder
) -> None:
    openai.script.token_logprob = -0.01
    openai.script.text = "You can pay by bank transfer."  # from the model's own head
    answer = await make_responder().answer(question("Can I pay by bank transfer?", passages=[]))
    assert answer.error is None
    assert answer.confidence <= 0.2
    assert answer.sources == []
    system = openai.requests[0]["json"]["messages"][0]["content"]
    assert "No passages" in system


async def test_a_cut_off_answer_and_thinking_are_handled(
    openai: FakeOpenAI, make_responder: MakeResponder
) -> None:
    openai.script.token_logprob = -0.01
    complete = await make_responder().answer(question())
    openai.script.text = "<think>The user wants a reset.</think>Choose Forgot password [1]"
    openai.script.finish_reason = "length"
    cut = await make_responder().answer(question())
    assert cut.text == "Choose Forgot password"
    assert cut.confidence < complete.confidence


# --- failures are answers ---------------------------------------------------------------------


async def test_timeout_returns_quickly_with_confidence_zero(
    openai: FakeOpenAI, make_responder: MakeResponder
) -> None:
    openai.script.delay = 3.0
    started = time.perf_counter()
    answer = await make_responder(timeout_seconds=0.3).answer(question())
    elapsed = time.perf_counter() - started
    assert_failure(answer, "timeout")
    assert elapsed < 1.0


@pytest.mark.parametrize(
    ("status", "reason"),
    [(500, "server error (HTTP 500)"), (503, "HTTP 503"), (429, "rate limited")],
)
async def test_server_errors_are_answers(
    openai: FakeOpenAI, make_responder: MakeResponder, status: int, reason: str
) -> None:
    openai.script.status = status
    assert_failure(await make_responder().answer(question()), reason)


async def test_wrong_key_and_wrong_path_are_answers(
    openai: FakeOpenAI, make_responder: MakeResponder
) -> None:
    assert_failure(await make_responder(api_key="sk-wrong").answer(question()), "HTTP 401")
    # base_url without /v1: the request goes to /chat/completions, which does not exist.
    no_version = make_responder(base_url=f"http://127.0.0.1:{openai.port}")
    assert_failure(await no_version.answer(question()), "HTTP 404")


async def test_connection_refused_is_an_answer(make_responder: MakeResponder) -> None:
    started = time.perf_counter()
    answer = await make_responder(base_url=f"http://127.0.0.1:{closed_port()}/v1").answer(
        question()
    )
    assert_failure(answer, "connection failed")
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        (Script(raw_body='{"id": "chatcmpl-1", "choices": [{"message": '), "malformed JSON"),
        (Script(raw_body="<html>Bad gateway</html>"), "malformed JSON"),
        (Script(raw_body="[]"), "malformed response"),
        (Script(choices=[]), "no choices"),
        (Script(raw_body='{"id": "chatcmpl-1", "object": "chat.completion"}'), "no choices"),
        (Script(choices=[{"index": 0, "finish_reason": "stop"}]), "no message"),
        (Script(text=""), "empty reply"),
        (Script(text="   \n"), "empty reply"),
        (
            Script(
                choices=[
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": None, "refusal": "No."},
                        "finish_reason": "stop",
                    }
                ]
            ),
            "model refused",
        ),
    ],
)
async def test_unusable_responses_are_answers(
    openai: FakeOpenAI, make_responder: MakeResponder, script: Script, reason: str
) -> None:
    openai.script = script
    assert_failure(await make_responder().answer(question()), reason)


async def test_the_api_key_never_reaches_the_logs(
    openai: FakeOpenAI, make_responder: MakeResponder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "sk-wrong-0123456789abcdef"
    await make_responder().answer(question())
    openai.script.reject_logprobs = True
    await make_responder().answer(question())
    openai.script.reject_logprobs = False
    # The server echoes the key it was given in its error body.
    failed = await make_responder(api_key=wrong).answer(question())
    assert failed.error is not None
    assert openai.requests[-1]["headers"]["authorization"] == f"Bearer {wrong}"
    assert caplog.records, "the failure was logged"
    assert "401" in caplog.text
    assert KEY not in caplog.text
    assert wrong not in caplog.text
    assert wrong not in repr(failed)


# --- through the app --------------------------------------------------------------------------


@pytest.fixture
def openai_target() -> str:
    """`up`: the test server; `down`: a closed port. Parametrize a test to change it."""
    return "up"


@pytest.fixture
def settings_overrides(tmp_path: Path, openai: FakeOpenAI, openai_target: str) -> dict[str, Any]:
    base_url = openai.base_url if openai_target == "up" else f"http://127.0.0.1:{closed_port()}/v1"
    config = {
        "nectar_bots": {
            "responder": {
                "provider": "openai",
                "openai": {
                    "base_url": base_url,
                    "api_key": KEY,
                    "model": MODEL,
                    "timeout_seconds": 0.5,
                },
            }
        }
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return {"config": path}


Chat = Callable[..., Awaitable[httpx.Response]]


@pytest.fixture
async def chat_bot(client: httpx.AsyncClient, admin: Any) -> tuple[dict[str, Any], str, Chat]:
    r = await client.post("/api/honey-jars", json={"name": "Hivebox help"}, headers=admin.headers)
    assert r.status_code == 201, r.text
    jar_id = r.json()["honey_jar"]["id"]
    r = await client.post(
        f"/api/honey-jars/{jar_id}/documents",
        json={
            "title": "Resetting your password",
            "content": "# Resetting your password\n\n## Forgot your password\n\nOn the sign-in "
            "page choose **Forgot password**. We email you a reset link; the link works for "
            "30 minutes.",
        },
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    doc_id = r.json()["document"]["id"]
    bot = await create_bot(
        client, admin, name="Hivebox", system_prompt=SYSTEM_PROMPT, honey_jar_ids=[jar_id]
    )

    async def chat(message: str, **body: Any) -> httpx.Response:
        return await client.post(
            f"/api/nectar-bots/{bot['id']}/chat",
            json={"message": message, **body},
            headers={"Authorization": f"Bearer {bot['api_key']}"},
        )

    return bot, doc_id, chat


async def test_chat_answers_with_the_model_through_the_api(
    openai: FakeOpenAI, chat_bot: tuple[dict[str, Any], str, Chat]
) -> None:
    _, doc_id, chat = chat_bot
    openai.script.token_logprob = -0.01
    r = await chat("How do I reset my password?")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["handled_by"] == "bot"
    assert body["reply"] == (
        "Choose Forgot password on the sign-in page; the link works for 30 minutes."
    )
    assert body["confidence"] > 0.8
    assert [s["document_id"] for s in body["sources"]] == [doc_id]
    [sent] = openai.requests
    system = sent["json"]["messages"][0]["content"]
    assert system.startswith(SYSTEM_PROMPT)
    assert "the link works for 30 minutes" in system
    assert sent["json"]["messages"][-1] == {
        "role": "user",
        "content": "How do I reset my password?",
    }

    openai.script.text = "It works for 30 minutes [1]."
    r = await chat("How long is the reset link valid?", conversation_id=body["conversation_id"])
    assert r.status_code == 200, r.text
    assert r.json()["reply"] == "It works for 30 minutes."
    messages = openai.requests[-1]["json"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == body["reply"]


@pytest.mark.parametrize("openai_target", ["down"])
async def test_chat_with_the_model_server_down_still_answers(
    chat_bot: tuple[dict[str, Any], str, Chat],
) -> None:
    _, _, chat = chat_bot
    started = time.perf_counter()
    r = await chat("How do I reset my password?")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["confidence"] == 0.0
    assert body["reply"] == FALLBACK
    assert body["sources"] == []
    assert time.perf_counter() - started < 2.0
