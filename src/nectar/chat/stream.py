"""Server-Sent Events for a conversation: what was missed, then every new message live."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa

from nectar.chat.models import Message
from nectar.chat.schemas import MessageOut
from nectar.deps import Services
from nectar.events import conversation_channel

_MSG = Message.__table__  # type: ignore[attr-defined]
# What a client sees of a message (the read-back list and the live stream alike).
MESSAGE_COLUMNS = (
    _MSG.c.id,
    _MSG.c.seq,
    _MSG.c.role,
    _MSG.c.content,
    _MSG.c.confidence,
    _MSG.c.sources,
    _MSG.c.created_at,
)


def message_payload(row: dict[str, Any]) -> dict[str, Any]:
    return MessageOut.model_validate(row).model_dump(mode="json")


async def publish_messages(
    services: Services, conversation_id: uuid.UUID, rows: list[dict[str, Any]]
) -> None:
    """Tell live subscribers about messages that have just been committed."""
    await services.events.publish(
        conversation_channel(conversation_id),
        {"type": "messages", "messages": [message_payload(r) for r in rows]},
    )


async def seq_of(
    services: Services, conversation_id: uuid.UUID, message_id: uuid.UUID | None
) -> int:
    if message_id is None:
        return 0
    async with services.engine.connect() as conn:
        seq = (
            await conn.execute(
                sa.select(_MSG.c.seq).where(
                    _MSG.c.id == message_id, _MSG.c.conversation_id == conversation_id
                )
            )
        ).scalar_one_or_none()
    if seq is None:
        from nectar.chat.exceptions import MessageNotFound

        raise MessageNotFound()
    return int(seq)


async def follow(
    services: Services, conversation_id: uuid.UUID, after_seq: int
) -> AsyncIterator[dict[str, Any]]:
    """SSE events (``id`` = message id, ``event`` = message): the backlog after ``after_seq``
    from the database, then live messages. Subscribing first means nothing falls between."""
    async with services.events.subscribe(conversation_channel(conversation_id)) as live:
        async with services.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(*MESSAGE_COLUMNS)
                    .where(_MSG.c.conversation_id == conversation_id, _MSG.c.seq > after_seq)
                    .order_by(_MSG.c.seq)
                    .limit(1000)
                )
            ).mappings()
            backlog = [message_payload(dict(r)) for r in rows]
        last = after_seq
        for message in backlog:
            last = message["seq"]
            yield _sse(message)
        async for event in live:
            for message in event.get("messages", ()):
                if message["seq"] > last:
                    last = message["seq"]
                    yield _sse(message)


def _sse(message: dict[str, Any]) -> dict[str, Any]:
    return {"id": message["id"], "event": "message", "data": json.dumps(message)}
