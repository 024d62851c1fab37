"""What an agent gets when a handoff opens: the full context and a five-second summary."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from nectar.chat.models import Conversation, Message
from nectar.knowledge.search import query_terms

MAX_CONTEXT_MESSAGES = 200
_CONV = Conversation.__table__  # type: ignore[attr-defined]
_MSG = Message.__table__  # type: ignore[attr-defined]


async def snapshot(
    conn: AsyncConnection,
    *,
    bot: dict[str, Any],
    conversation_id: uuid.UUID,
    trigger_message_id: uuid.UUID | None,
    reason: str,
    urgency: str,
    evidence: dict[str, Any],
    bot_draft: dict[str, Any] | None,
    now: datetime,
) -> tuple[dict[str, Any], str]:
    """The seed's context (bot, conversation, user, messages, reason, urgency, jars used,
    timestamp) plus evidence, the bot's withheld draft answer and a summary."""
    conv = (
        (await conn.execute(sa.select(_CONV).where(_CONV.c.id == conversation_id))).mappings().one()
    )
    rows = (
        await conn.execute(
            sa.select(
                _MSG.c.id,
                _MSG.c.seq,
                _MSG.c.role,
                _MSG.c.content,
                _MSG.c.confidence,
                _MSG.c.sources,
                _MSG.c.created_at,
            )
            .where(_MSG.c.conversation_id == conversation_id)
            .order_by(_MSG.c.seq.desc())
            .limit(MAX_CONTEXT_MESSAGES)
        )
    ).mappings()
    return build(
        bot=bot,
        conversation_id=conversation_id,
        conversation=conv,
        messages=list(rows)[::-1],
        trigger_message_id=trigger_message_id,
        reason=reason,
        urgency=urgency,
        evidence=evidence,
        bot_draft=bot_draft,
        now=now,
    )


def build(
    *,
    bot: dict[str, Any],
    conversation_id: uuid.UUID,
    conversation: Mapping[Any, Any],
    messages: Sequence[Mapping[Any, Any]],
    trigger_message_id: uuid.UUID | None,
    reason: str,
    urgency: str,
    evidence: dict[str, Any],
    bot_draft: dict[str, Any] | None,
    now: datetime,
) -> tuple[dict[str, Any], str]:
    """The context from the conversation's row (user_ref, user_name, user_email, metadata,
    created_at) and its latest messages, oldest first (id, seq, role, content, confidence,
    sources, created_at)."""
    history = [
        {
            "id": str(r["id"]),
            "seq": r["seq"],
            "role": r["role"],
            "content": r["content"],
            "confidence": r["confidence"],
            "sources": r["sources"],
            "created_at": r["created_at"].isoformat(),
        }
        for r in messages
    ]
    jars_used: dict[str, str] = {}
    for message in history:
        for source in message["sources"] or []:
            jars_used.setdefault(source.get("document_id", ""), source.get("title", ""))
    trigger = next((m for m in history if m["id"] == str(trigger_message_id)), None)
    conv = conversation
    user = {"id": conv["user_ref"], "name": conv["user_name"], "email": conv["user_email"]}
    summary = summarize(history, reason, urgency, user.get("name"))
    context = {
        "bot_id": bot["id"],
        "bot_name": bot["name"],
        "conversation_id": str(conversation_id),
        "conversation_started_at": conv["created_at"].isoformat(),
        "user_info": user,
        "metadata": conv["metadata"],
        "messages": history,
        "trigger_message": trigger,
        "handoff_reason": reason,
        "urgency": urgency,
        "evidence": evidence,
        "bot_draft": bot_draft,
        "knowledge_sources_used": [
            {"document_id": doc, "title": title} for doc, title in jars_used.items() if doc
        ],
        "honey_jar_ids": [str(j) for j in bot.get("jar_ids", ())],
        "summary": summary,
        "timestamp": now.isoformat(),
    }
    return context, summary


def _clip(text: str, limit: int = 160) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def summarize(
    messages: list[dict[str, Any]], reason: str, urgency: str, user_name: str | None
) -> str:
    """Extractive: the user's opening question, their most informative message and the one
    that triggered the handoff, plus the bot's last confidence. Short enough to read at once."""
    user_msgs = [m for m in messages if m["role"] == "user"]
    who = user_name or "The user"
    if not user_msgs:
        return f"{who} has not written yet. Opened for {reason.replace('_', ' ')} ({urgency})."
    first, last = user_msgs[0], user_msgs[-1]
    richest = max(user_msgs, key=lambda m: len(query_terms(m["content"])))
    picked: list[dict[str, Any]] = []
    for m in (first, richest, last):
        if m not in picked:
            picked.append(m)
    parts = [f'{who} wrote: "{_clip(picked[0]["content"])}"']
    parts.extend(f'"{_clip(m["content"])}"' for m in picked[1:])
    confidences = [
        m["confidence"] for m in messages if m["role"] == "bot" and m["confidence"] is not None
    ]
    tail = f"Handoff: {reason.replace('_', ' ')}, urgency {urgency}"
    if confidences:
        tail += f"; last bot answer confidence {confidences[-1]:.2f}"
    turns = len(user_msgs)
    tail += f"; {turns} user message{'s' if turns != 1 else ''}."
    return " … ".join(parts) + " " + tail
