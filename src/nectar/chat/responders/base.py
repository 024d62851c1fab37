"""What every responder gets and gives back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Protocol

from nectar.knowledge.search import Hit


@dataclass(frozen=True, slots=True)
class Source:
    document_id: uuid.UUID
    title: str
    heading: str
    score: float


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    # Always a number in [0, 1]; a provider failure is an answer with confidence 0.
    confidence: float
    sources: list[Source] = field(default_factory=list)
    # Set when the provider failed; the text is then a polite fallback.
    error: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            object.__setattr__(self, "confidence", min(1.0, max(0.0, self.confidence)))


@dataclass(frozen=True, slots=True)
class HistoryItem:
    role: str  # user, bot, agent or system
    content: str
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class Question:
    """One turn to answer: the bot, the new message, recent history and retrieved passages."""

    bot_name: str
    system_prompt: str
    message: str
    history: list[HistoryItem]
    # Passages retrieved for this message (and the previous user message, for follow-ups),
    # best first by the database's full-text rank.
    passages: list[Hit]


class Responder(Protocol):
    name: str
    # True when answer() only computes (no network, no disk): the chat turn may then keep
    # its database connection from reading to writing.
    local: bool

    async def answer(self, question: Question) -> Answer: ...

    async def aclose(self) -> None: ...
