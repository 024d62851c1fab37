"""A responder backed by any OpenAI-compatible chat completions endpoint.

OpenAI, vLLM, Ollama and the llama.cpp server all speak ``POST {base_url}/chat/completions``.
The model gets the bot's system prompt, the retrieved passages (numbered, so it can cite
them), recent history and the user's message. Confidence comes from the answer's token
log-probabilities when the server returns them, otherwise from the retrieval evidence, and is
pulled down when the model says it does not know. A provider failure of any kind is an
answer with confidence 0 and a polite reply: nothing raises out of :meth:`answer`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import re
import ssl
import uuid
from typing import Any

import httpx

from nectar import __version__
from nectar.chat.responders import confidence
from nectar.chat.responders.base import Answer, Question, Source
from nectar.config import OpenAIConfig
from nectar.knowledge.search import Hit

log = logging.getLogger(__name__)

FALLBACK = (
    "Sorry, I can't answer that right now. Please try again in a moment, or ask to talk to "
    "a person."
)
INSTRUCTIONS = (
    "Answer the user's question using only the numbered passages below from the knowledge "
    "base. Do not use outside knowledge and do not guess. If the passages do not contain the "
    "answer, say plainly that you don't know; never make an answer up. Cite the passages you "
    "used by their number in square brackets, like [1] or [2][3]. Keep the answer short and "
    "direct."
)
NO_PASSAGES = (
    "No passages were found for this question. Say plainly that you don't know the answer."
)
# Prompt budget: small local models have 4k-8k token contexts, and the best passages come
# first, so the tail is what gets dropped.
PASSAGE_CHARS = 1500
CONTEXT_CHARS = 6000
HISTORY_CHARS = 1500
# Message roles stored by Nectar -> roles of the chat completions API.
ROLES = {"user": "user", "bot": "assistant", "agent": "assistant"}

_CITATION = re.compile(r"[ \t]*\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")
_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


class _ProviderError(Exception):
    """The server answered, but not with a usable completion."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class OpenAIResponder:
    name = "openai"
    local = False  # a model API call may take seconds

    def __init__(self, config: OpenAIConfig) -> None:
        self._config = config
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._key = config.api_key.get_secret_value() if config.api_key else ""
        headers = {"User-Agent": f"nectar/{__version__}", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        # One client for the process: connections to the model server are kept alive.
        self._client = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(config.timeout_seconds), verify=_tls()
        )
        # Cleared when the server rejects the `logprobs` parameter; not asked for again.
        self._send_logprobs = config.logprobs

    async def aclose(self) -> None:
        await self._client.aclose()

    async def answer(self, question: Question) -> Answer:
        seconds = self._config.timeout_seconds
        try:
            # httpx's timeout bounds each phase (connect, each read); this bounds the turn,
            # including a retry, so a slow trickle of bytes cannot hold a user for minutes.
            async with asyncio.timeout(seconds):
                return await self._answer(question)
        except (TimeoutError, httpx.TimeoutException):
            return self._failure(f"timeout after {seconds:g}s")
        except httpx.ConnectError as exc:
            return self._failure("connection failed", str(exc))
        except httpx.HTTPError as exc:
            return self._failure(f"transport error ({type(exc).__name__})", str(exc))
        except _ProviderError as exc:
            return self._failure(exc.reason, exc.detail)
        except Exception:
            # A bug in this module must not cost the user their turn; it is logged in full.
            log.exception("openai responder: unexpected error")
            return self._failure("unexpected error")

    async def _answer(self, question: Question) -> Answer:
        passages = fit_passages(question.passages)
        payload: dict[str, Any] = {
            "model": self._config.model,
            "messages": build_messages(question, passages, self._config.history_messages),
            "temperature": self._config.temperature,
            "max_tokens": self._config.max_tokens,
        }
        asked_logprobs = self._send_logprobs
        if asked_logprobs:
            payload["logprobs"] = True
        response = await self._client.post(self._url, json=payload)
        if asked_logprobs and response.status_code in (400, 422):
            # Many servers reject parameters they do not know. Try once without it, and if
            # that works, stop asking this server for log-probabilities.
            del payload["logprobs"]
            first = response
            response = await self._client.post(self._url, json=payload)
            if response.is_success:
                self._send_logprobs = False
                log.info(
                    "openai responder: %s rejected logprobs (HTTP %s: %s); not asking again",
                    self._url,
                    first.status_code,
                    self._redact(first.text[:200]),
                )
        _check_status(response)
        text, finish_reason, logprobs = _parse(response)
        return self._compose(question, passages, text, finish_reason, logprobs)

    def _compose(
        self,
        question: Question,
        passages: list[tuple[Hit, str]],
        raw: str,
        finish_reason: str | None,
        logprobs: list[float] | None,
    ) -> Answer:
        hits = [hit for hit, _ in passages]
        text, cited = strip_citations(raw, len(hits))
        if not text:
            raise _ProviderError("empty reply")
        refusal = confidence.refusal_kind(text)
        value = confidence.combine(
            confidence.token_confidence(logprobs) if logprobs else None,
            confidence.retrieval_evidence(question.message, question.history, hits),
            bool(hits),
            refusal,
            truncated=finish_reason == "length",
        )
        if refusal == "refusal":
            used: list[Hit] = []
        elif cited:
            used = [hits[n - 1] for n in cited]
        else:
            used = hits
        return Answer(text, round(value, 3), _sources(used))

    def _failure(self, reason: str, detail: str = "") -> Answer:
        log.warning(
            "openai responder: %s%s", reason, f" ({self._redact(detail)})" if detail else ""
        )
        return Answer(FALLBACK, 0.0, [], error=reason)

    def _redact(self, text: str) -> str:
        """Never let the API key reach a log line, even when a server echoes it back."""
        return text.replace(self._key, "***") if self._key else text


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default context, built once: loading the CA bundle costs ~90 ms per client."""
    return httpx.create_ssl_context()


# --- the request ------------------------------------------------------------------------------


def fit_passages(hits: list[Hit]) -> list[tuple[Hit, str]]:
    """The best passages that fit the prompt budget, each with its (possibly clipped) body."""
    fitted: list[tuple[Hit, str]] = []
    total = 0
    for hit in hits:
        body = clip(hit.body.strip(), PASSAGE_CHARS)
        if fitted and total + len(body) > CONTEXT_CHARS:
            break
        fitted.append((hit, body))
        total += len(body)
    return fitted


def build_messages(
    question: Question, passages: list[tuple[Hit, str]], history_messages: int
) -> list[dict[str, str]]:
    intro = question.system_prompt.strip() or (
        f"You are {question.bot_name}, a helpful support assistant."
    )
    if passages:
        numbered = "\n\n".join(
            f"[{n}] {_label(hit)}\n{body}" for n, (hit, body) in enumerate(passages, 1)
        )
        system = f"{intro}\n\n{INSTRUCTIONS}\n\nPassages:\n\n{numbered}"
    else:
        system = f"{intro}\n\n{INSTRUCTIONS}\n\n{NO_PASSAGES}"
    messages = [{"role": "system", "content": system}]
    turns = [h for h in question.history if h.role in ROLES and h.content.strip()]
    for item in turns[-history_messages:] if history_messages else []:
        _append(messages, ROLES[item.role], clip(item.content.strip(), HISTORY_CHARS))
    _append(messages, "user", question.message)
    return messages


def _append(messages: list[dict[str, str]], role: str, content: str) -> None:
    """Keep user and assistant turns alternating and starting with the user: the chat
    templates of many local models (Mistral, Llama 2) reject anything else."""
    last = messages[-1]
    if last["role"] == role:
        last["content"] = f"{last['content']}\n\n{content}"
    elif not (role == "assistant" and last["role"] == "system"):
        messages.append({"role": role, "content": content})


def _label(hit: Hit) -> str:
    heading = hit.heading.strip()
    title = hit.title.strip()
    return f"{title} > {heading}" if heading and heading != title else title


def clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + " …"


# --- the response -----------------------------------------------------------------------------


def _check_status(response: httpx.Response) -> None:
    status = response.status_code
    if response.is_success:
        return
    body = response.text[:200]
    if status == 429:
        raise _ProviderError("rate limited (HTTP 429)", body)
    if status >= 500:
        raise _ProviderError(f"server error (HTTP {status})", body)
    raise _ProviderError(f"request rejected (HTTP {status})", body)


def _parse(response: httpx.Response) -> tuple[str, str | None, list[float] | None]:
    """The reply text, finish reason and token log-probabilities (None when absent)."""
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _ProviderError("malformed JSON", response.text[:200]) from None
    if not isinstance(data, dict):
        raise _ProviderError("malformed response", "top level is not an object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _ProviderError("no choices in response", response.text[:200])
    choice: dict[str, Any] = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise _ProviderError("no message in response", response.text[:200])
    content = message.get("content")
    if not isinstance(content, str) or not content.strip():
        if message.get("refusal"):
            raise _ProviderError("model refused", str(message["refusal"])[:200])
        raise _ProviderError("empty reply")
    # Reasoning models served by vLLM or Ollama may put their thinking in the content.
    text = _THINKING.sub("", content).strip()
    finish = choice.get("finish_reason")
    return text, finish if isinstance(finish, str) else None, _logprobs(choice.get("logprobs"))


def _logprobs(block: Any) -> list[float] | None:
    """Token log-probabilities from ``{"content": [{"token", "logprob"}]}`` (chat API) or
    ``{"token_logprobs": [...]}`` (the legacy shape some servers still send)."""
    if not isinstance(block, dict):
        return None
    values: list[Any]
    if isinstance(block.get("content"), list):
        values = [t.get("logprob") for t in block["content"] if isinstance(t, dict)]
    elif isinstance(block.get("token_logprobs"), list):
        values = block["token_logprobs"]
    else:
        return None
    found = [
        float(v)
        for v in values
        if isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)
    ]
    return found or None


def strip_citations(text: str, count: int) -> tuple[str, list[int]]:
    """Remove ``[n]`` markers that name a passage (the API returns sources separately) and
    return the cited passage numbers, in order of first citation."""
    cited: list[int] = []

    def replace(match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.split(r"\s*[,;]\s*", match.group(1))]
        if not all(1 <= n <= count for n in numbers):
            return match.group(0)
        for n in numbers:
            if n not in cited:
                cited.append(n)
        return ""

    cleaned = _CITATION.sub(replace, text)
    cleaned = re.sub(r"[ \t]+([.,;:!?])", r"\1", cleaned) if cited else cleaned
    return cleaned.strip(), cited


def _sources(hits: list[Hit]) -> list[Source]:
    seen: set[tuple[uuid.UUID, str]] = set()
    sources = []
    for hit in hits:
        if (hit.document_id, hit.heading) in seen:
            continue
        seen.add((hit.document_id, hit.heading))
        sources.append(Source(hit.document_id, hit.title, hit.heading, round(hit.score, 4)))
    return sources
