"""Redis is an accelerator: with it unreachable the API still starts, answers chats, opens
handoffs, and nothing is lost (the sweeper sends what could not be enqueued)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from nectar.app import create_app
from tests.conftest import make_settings
from tests.helpers import create_bot
from tests.notifications.test_outbox import write_config
from tests.receivers import free_port


async def test_chat_and_handoffs_work_while_redis_is_down(
    database_url: str, admin: Any, db: Any, tmp_path: Path
) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(
        make_settings(database_url, redis_url=dead_redis, config=write_config(tmp_path))
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["redis"].startswith("unreachable")
        bot = await create_bot(client, admin)
        url = f"/api/nectar-bots/{bot['id']}/chat"
        headers = {"X-API-Key": bot["api_key"]}
        assert (
            await client.post(url, json={"message": "hello"}, headers=headers)
        ).status_code == 200
        turn = await client.post(url, json={"message": "/human please"}, headers=headers)
        assert turn.status_code == 200, turn.text
        hid = turn.json()["handoff"]["id"]
        # Limits still hold, counted in-process.
        limited = await create_bot(client, admin, name="Limited", rate_limit_per_hour=2)
        lurl = f"/api/nectar-bots/{limited['id']}/chat"
        lheaders = {"X-API-Key": limited["api_key"]}
        codes = [
            (await client.post(lurl, json={"message": f"hi {i}"}, headers=lheaders)).status_code
            for i in range(3)
        ]
        assert codes == [200, 200, 429]
    async with db.connect() as conn:
        pending = (
            await conn.execute(
                sa.text(
                    "SELECT count(*) FROM notification_deliveries "
                    "WHERE status = 'pending' AND handoff_id = :hid"
                ).bindparams(sa.bindparam("hid", type_=sa.Uuid())),
                {"hid": uuid.UUID(hid)},
            )
        ).scalar_one()
    # The handoff's notifications could not be enqueued: they wait in the outbox, not lost.
    assert pending >= 1
