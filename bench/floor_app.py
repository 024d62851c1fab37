"""The floor for bench/chat_turn.py: the least a chat turn could cost on this stack.

One FastAPI app, served like Nectar (one uvicorn worker, uvloop, httptools, no access log),
with one POST endpoint that validates a small pydantic body and does one INSERT through a raw
asyncpg pool, and a constant GET route for measuring the load generator itself.

    python bench/floor_app.py --dsn postgresql://postgres@127.0.0.1:5432/DB --port 8100

It takes the same request body as the chat endpoint, so the same load drives both.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

import asyncpg
import uvicorn
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, StringConstraints

TABLE = "bench_floor_messages"
POOL_SIZE = 10  # Nectar's default NECTAR_DB_POOL_SIZE
APPLICATION_NAME = "nectar-bench-floor"  # tells its PostgreSQL backends apart


class FloorRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
    conversation_id: uuid.UUID | None = None


class FloorResponse(BaseModel):
    conversation_id: uuid.UUID
    message_id: uuid.UUID


def create_app(dsn: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=POOL_SIZE,
            max_size=POOL_SIZE,
            server_settings={"application_name": APPLICATION_NAME},
        )
        async with pool.acquire() as conn:
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} ("
                " id uuid PRIMARY KEY,"
                " conversation_id uuid NOT NULL,"
                " content text NOT NULL,"
                " created_at timestamptz NOT NULL)"
            )
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(title="Nectar bench floor", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/chat")
    async def chat(body: FloorRequest, request: Request) -> FloorResponse:
        message_id = uuid.uuid4()
        conversation_id = body.conversation_id or uuid.uuid4()
        await request.app.state.pool.execute(
            f"INSERT INTO {TABLE} (id, conversation_id, content, created_at)"  # noqa: S608
            " VALUES ($1, $2, $3, $4)",
            message_id,
            conversation_id,
            body.message,
            datetime.now(UTC),
        )
        return FloorResponse(conversation_id=conversation_id, message_id=message_id)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="postgresql://user@host:port/database")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.dsn),
        host=args.host,
        port=args.port,
        workers=1,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
