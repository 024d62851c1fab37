"""The handoff lifecycle through the HTTP API: user ↔ agent round trip, transitions, roles."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.helpers import assert_error, create_bot

ARTICLE = "# Passwords\n\nTo reset your password click **Forgot password** on the sign-in page."


@pytest.fixture
async def bot(client: httpx.AsyncClient, admin: Any) -> dict[str, Any]:
    r = await client.post("/api/honey-jars", json={"name": "Help"}, headers=admin.headers)
    jar = r.json()["honey_jar"]["id"]
    await client.post(
        f"/api/honey-jars/{jar}/documents",
        json={"title": "Passwords", "content": ARTICLE},
        headers=admin.headers,
    )
    return await create_bot(client, admin, honey_jar_ids=[jar])


async def say(
    client: httpx.AsyncClient, bot: dict[str, Any], text: str, cid: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"message": text, "user": {"name": "Ada", "email": "ada@example.com"}}
    if cid:
        body["conversation_id"] = cid
    r = await client.post(
        f"/api/nectar-bots/{bot['id']}/chat",
        json=body,
        headers={"Authorization": f"Bearer {bot['api_key']}"},
    )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


async def escalate(client: httpx.AsyncClient, who: Any, cid: str, **body: Any) -> httpx.Response:
    return await client.post(
        f"/api/nectar-bots/conversations/{cid}/handoff", json=body, headers=who.headers
    )


async def open_handoff(
    client: httpx.AsyncClient, bot: dict[str, Any], admin: Any, urgency: str = "medium"
) -> tuple[str, str]:
    cid = (await say(client, bot, "how do I reset my password"))["conversation_id"]
    r = await escalate(client, admin, cid, urgency=urgency, note="VIP customer")
    assert r.status_code == 201, r.text
    return cid, r.json()["handoff"]["id"]


async def messages(client: httpx.AsyncClient, bot: dict[str, Any], cid: str) -> list[dict]:
    r = await client.get(
        f"/api/nectar-bots/{bot['id']}/conversations/{cid}/messages",
        headers={"Authorization": f"Bearer {bot['api_key']}"},
    )
    result: list[dict] = r.json()["messages"]
    return result


async def test_full_round_trip(
    client: httpx.AsyncClient, bot: dict, admin: Any, accounts: Any
) -> None:
    agent = await accounts("agent")
    cid, hid = await open_handoff(client, bot, admin)
    url = f"/api/nectar-bots/handoffs/{hid}"

    # The agent finds it in the queue and opens it with its context.
    queue = await client.get("/api/nectar-bots/handoffs?status=active", headers=agent.headers)
    assert [h["id"] for h in queue.json()["handoffs"]] == [hid]
    detail = (await client.get(url, headers=agent.headers)).json()
    assert detail["status"] == "pending"
    assert detail["reason"] == "admin_override"
    assert detail["urgency"] == "medium"
    assert detail["context"]["user_info"]["name"] == "Ada"
    assert [m["role"] for m in detail["context"]["messages"]] == ["user", "bot"]
    assert "reset my password" in detail["summary"]
    assert detail["evidence"]["note"] == "VIP customer"

    # Accept, then reply: the reply lands in the user's conversation as role "agent".
    r = await client.post(f"{url}/assign", headers=agent.headers)
    assert r.status_code == 200, r.text
    assert r.json()["handoff"]["status"] == "assigned"
    assert r.json()["handoff"]["assignee_id"] == str(agent.id)
    r = await client.post(
        f"{url}/messages", json={"content": "Hi Ada, I'm on it."}, headers=agent.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["handoff"]["status"] == "in_progress"
    assert r.json()["handoff"]["time_to_first_response_seconds"] is not None
    convo = await messages(client, bot, cid)
    assert convo[-1]["role"] == "agent"
    assert convo[-1]["content"] == "Hi Ada, I'm on it."

    # While the human holds it the bot is silent and the user's words reach the agent.
    turn = await say(client, bot, "thanks, it says my link expired", cid)
    assert turn["handled_by"] == "human"
    assert turn["reply"] is None
    assert turn["handoff"] == {
        "id": hid,
        "status": "in_progress",
        "reason": "admin_override",
        "urgency": "medium",
    }
    polled = await client.get(f"{url}/messages", params={"after_seq": 3}, headers=agent.headers)
    assert [m["content"] for m in polled.json()["messages"]] == ["thanks, it says my link expired"]
    assert not any(m["role"] == "bot" for m in (await messages(client, bot, cid))[3:])

    # Resolve: the conversation goes back to the bot, which answers again.
    r = await client.post(
        f"{url}/resolve", json={"resolution_notes": "sent a new link"}, headers=agent.headers
    )
    assert r.status_code == 200, r.text
    resolved = r.json()["handoff"]
    assert resolved["status"] == "resolved"
    assert resolved["resolution_notes"] == "sent a new link"
    assert resolved["time_to_resolve_seconds"] >= resolved["time_to_accept_seconds"] >= 0
    back = await say(client, bot, "how do I reset my password", cid)
    assert back["handled_by"] == "bot"
    assert "Forgot password" in back["reply"]
    roles = [m["role"] for m in await messages(client, bot, cid)]
    assert roles == ["user", "bot", "agent", "user", "system", "user", "bot"]

    # The history says who did what, in order.
    events = (await client.get(url, headers=agent.headers)).json()["events"]
    assert [(e["kind"], e["from_status"], e["to_status"]) for e in events] == [
        ("created", None, "pending"),
        ("assigned", "pending", "assigned"),
        ("replied", "assigned", "in_progress"),
        ("resolved", "in_progress", "resolved"),
    ]
    assert events[0]["actor_id"] == str(admin.id)
    assert all(e["actor_id"] == str(agent.id) for e in events[1:])


async def test_one_open_handoff_per_conversation(
    client: httpx.AsyncClient, bot: dict, admin: Any
) -> None:
    cid, hid = await open_handoff(client, bot, admin)
    r = await escalate(client, admin, cid)
    assert hid in assert_error(r, 409, "handoff_already_open")["detail"]
    results = await asyncio.gather(*(escalate(client, admin, cid) for _ in range(5)))
    assert all(r.status_code == 409 for r in results)


async def test_two_agents_accepting_at_once_one_wins(
    client: httpx.AsyncClient, bot: dict, admin: Any, accounts: Any
) -> None:
    agents = [await accounts("agent") for _ in range(4)]
    _, hid = await open_handoff(client, bot, admin)
    results = await asyncio.gather(
        *(client.post(f"/api/nectar-bots/handoffs/{hid}/assign", headers=a.headers) for a in agents)
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 409, 409, 409]
    winner = next(a for a, r in zip(agents, results, strict=True) if r.status_code == 200)
    detail = (await client.get(f"/api/nectar-bots/handoffs/{hid}", headers=admin.headers)).json()
    assert detail["assignee_id"] == str(winner.id)
    assert [e["kind"] for e in detail["events"]] == ["created", "assigned"]


async def test_delegate_and_who_may_reply(
    client: httpx.AsyncClient, bot: dict, admin: Any, accounts: Any
) -> None:
    first, second, member = (
        await accounts("agent"),
        await accounts("agent"),
        await accounts("member"),
    )
    _, hid = await open_handoff(client, bot, admin)
    url = f"/api/nectar-bots/handoffs/{hid}"
    await client.post(f"{url}/assign", headers=first.headers)
    # Someone else cannot reply to or resolve a handoff they do not hold.
    r = await client.post(f"{url}/messages", json={"content": "hi"}, headers=second.headers)
    assert_error(r, 403)
    assert_error(await client.post(f"{url}/resolve", headers=second.headers), 403)
    # The holder delegates; now the other agent holds it.
    r = await client.post(f"{url}/assign", json={"agent_id": str(second.id)}, headers=first.headers)
    assert r.json()["handoff"]["assignee_id"] == str(second.id)
    assert (
        await client.post(f"{url}/messages", json={"content": "hi"}, headers=second.headers)
    ).status_code == 200
    # Delegating to someone who is not an agent, or to nobody real, is refused.
    r = await client.post(f"{url}/assign", json={"agent_id": str(member.id)}, headers=admin.headers)
    assert_error(r, 404, "agent_not_found")
    # An admin may always step in.
    assert (
        await client.post(f"{url}/messages", json={"content": "admin here"}, headers=admin.headers)
    ).status_code == 200


async def test_invalid_transitions_are_409(
    client: httpx.AsyncClient, bot: dict, admin: Any
) -> None:
    _, hid = await open_handoff(client, bot, admin)
    url = f"/api/nectar-bots/handoffs/{hid}"
    assert (await client.post(f"{url}/resolve", headers=admin.headers)).status_code == 200
    for path, body in (
        ("resolve", None),
        ("cancel", None),
        ("assign", None),
        ("messages", {"content": "x"}),
    ):
        r = await client.post(f"{url}/{path}", json=body, headers=admin.headers)
        assert "resolved" in assert_error(r, 409, "invalid_transition")["detail"]


async def test_cancel_returns_the_conversation_to_the_bot(
    client: httpx.AsyncClient, bot: dict, admin: Any
) -> None:
    cid, hid = await open_handoff(client, bot, admin)
    r = await client.post(
        f"/api/nectar-bots/handoffs/{hid}/cancel",
        json={"reason": "duplicate"},
        headers=admin.headers,
    )
    assert r.json()["handoff"]["status"] == "cancelled"
    assert (await say(client, bot, "reset password", cid))["handled_by"] == "bot"
    # and a new handoff may be opened for it
    assert (await escalate(client, admin, cid)).status_code == 201


async def test_resolve_without_returning_to_the_bot_closes_the_conversation(
    client: httpx.AsyncClient, bot: dict, admin: Any
) -> None:
    cid, hid = await open_handoff(client, bot, admin)
    await client.post(
        f"/api/nectar-bots/handoffs/{hid}/resolve",
        json={"return_to_bot": False},
        headers=admin.headers,
    )
    r = await client.post(
        f"/api/nectar-bots/{bot['id']}/chat",
        json={"message": "hello?", "conversation_id": cid},
        headers={"Authorization": f"Bearer {bot['api_key']}"},
    )
    assert_error(r, 409, "conversation_closed")


async def test_queue_order_and_filters(
    client: httpx.AsyncClient, bot: dict, admin: Any, accounts: Any
) -> None:
    agent = await accounts("agent")
    ids = {}
    for urgency in ("low", "critical", "medium", "high", "low"):
        ids.setdefault(urgency, []).append((await open_handoff(client, bot, admin, urgency))[1])
    r = await client.get(
        "/api/nectar-bots/handoffs", params={"status": "active"}, headers=agent.headers
    )
    got = [(h["urgency"], h["id"]) for h in r.json()["handoffs"]]
    assert [u for u, _ in got] == ["critical", "high", "medium", "low", "low"]
    assert [i for u, i in got if u == "low"] == ids["low"][::-1]  # newest first within a level
    r = await client.get(
        "/api/nectar-bots/handoffs", params={"urgency": "low"}, headers=agent.headers
    )
    assert r.json()["pagination"]["total"] == 2
    await client.post(f"/api/nectar-bots/handoffs/{ids['high'][0]}/assign", headers=agent.headers)
    mine = await client.get(
        "/api/nectar-bots/handoffs", params={"assignee_id": "me"}, headers=agent.headers
    )
    assert [h["id"] for h in mine.json()["handoffs"]] == ids["high"]
    r = await client.get(
        "/api/nectar-bots/handoffs",
        params={"status": "assigned", "reason": "admin_override", "bot_id": bot["id"]},
        headers=agent.headers,
    )
    assert r.json()["pagination"]["total"] == 1
    assert_error(
        await client.get(
            "/api/nectar-bots/handoffs", params={"status": "open"}, headers=agent.headers
        ),
        400,
    )
    assert_error(
        await client.get(
            "/api/nectar-bots/handoffs", params={"urgency": "urgent"}, headers=agent.headers
        ),
        422,
    )


async def test_members_see_only_their_bots_handoffs_and_cannot_work_them(
    client: httpx.AsyncClient, bot: dict, admin: Any, accounts: Any
) -> None:
    owner, stranger = await accounts("member"), await accounts("member")
    own_bot = await create_bot(client, owner, name="Owner's bot")
    cid = (await say(client, own_bot, "hello"))["conversation_id"]
    hid = (await escalate(client, admin, cid)).json()["handoff"]["id"]
    _, other = await open_handoff(client, bot, admin)
    listed = await client.get("/api/nectar-bots/handoffs", headers=owner.headers)
    assert [h["id"] for h in listed.json()["handoffs"]] == [hid]
    assert (
        await client.get(f"/api/nectar-bots/handoffs/{hid}", headers=owner.headers)
    ).status_code == 200
    assert_error(await client.get(f"/api/nectar-bots/handoffs/{other}", headers=owner.headers), 404)
    assert_error(
        await client.get(f"/api/nectar-bots/handoffs/{hid}", headers=stranger.headers), 404
    )
    assert_error(
        await client.post(f"/api/nectar-bots/handoffs/{hid}/assign", headers=owner.headers), 403
    )
    assert_error(await escalate(client, owner, cid), 403)
    assert_error(await client.get("/api/nectar-bots/handoffs"), 401)


async def test_reply_with_a_template(
    client: httpx.AsyncClient, bot: dict, admin: Any, accounts: Any
) -> None:
    agent = await accounts("agent")
    r = await client.post(
        "/api/nectar-bots/response-templates",
        json={"name": "greeting", "body": "Hi {user_name}, {agent_name} here. Ticket {ticket}."},
        headers=agent.headers,
    )
    assert r.status_code == 201, r.text
    template = r.json()["template"]
    assert template["placeholders"] == ["user_name", "agent_name", "ticket"]
    cid, hid = await open_handoff(client, bot, admin)
    url = f"/api/nectar-bots/handoffs/{hid}/messages"
    r = await client.post(url, json={"template_id": template["id"]}, headers=agent.headers)
    assert "{ticket}" in assert_error(r, 400)["detail"]
    r = await client.post(
        url,
        json={"template_id": template["id"], "variables": {"ticket": "T-9"}},
        headers=agent.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["sent"]["content"] == "Hi Ada, Agent here. Ticket T-9."
    assert (await messages(client, bot, cid))[-1]["content"] == "Hi Ada, Agent here. Ticket T-9."
    r = await client.post(
        url, json={"content": "x", "template_id": template["id"]}, headers=agent.headers
    )
    assert_error(r, 422)


async def test_templates_crud(client: httpx.AsyncClient, accounts: Any) -> None:
    agent, member = await accounts("agent"), await accounts("member")
    base = "/api/nectar-bots/response-templates"
    r = await client.post(
        base, json={"name": "bye", "body": "Bye {user_name}!"}, headers=agent.headers
    )
    tid = r.json()["template"]["id"]
    assert_error(
        await client.post(base, json={"name": "bye", "body": "again"}, headers=agent.headers), 409
    )
    assert_error(
        await client.post(
            base, json={"name": "bad", "body": "Hi {user name"}, headers=agent.headers
        ),
        400,
    )
    r = await client.put(
        f"{base}/{tid}", json={"body": "See you, {user_name}."}, headers=agent.headers
    )
    assert r.json()["template"]["body"] == "See you, {user_name}."
    listed = await client.get(base, headers=agent.headers)
    assert [t["name"] for t in listed.json()["templates"]] == ["bye"]
    assert_error(await client.get(base, headers=member.headers), 403)
    assert (await client.delete(f"{base}/{tid}", headers=agent.headers)).status_code == 204
    assert_error(await client.get(f"{base}/{tid}", headers=agent.headers), 404)


async def test_bot_handoff_settings(
    client: httpx.AsyncClient, bot: dict, admin: Any, accounts: Any
) -> None:
    url = f"/api/nectar-bots/{bot['id']}/handoff"
    r = await client.get(url, headers=admin.headers)
    assert r.status_code == 200
    assert r.json()["triggers"]["confidence_threshold"] == 0.6
    r = await client.post(
        url,
        json={
            "enabled": True,
            "triggers": {
                "confidence_threshold": 0.4,
                "keywords": ["billing person"],
                "disabled": ["keyword_detected"],
                "max_conversation_minutes": 30,
            },
            "notification_settings": {"methods": ["in_app", "email"], "urgency": "high"},
        },
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    settings = r.json()["handoff"]
    assert settings["triggers"]["confidence_threshold"] == 0.4
    assert settings["triggers"]["keywords"] == ["billing person"]
    assert settings["triggers"]["disabled"] == ["keyword_detected"]
    assert settings["triggers"]["max_conversation_minutes"] == 30
    assert settings["notification_settings"] == {"methods": ["in_app", "email"], "urgency": "high"}
    bot_view = (await client.get(f"/api/nectar-bots/{bot['id']}", headers=admin.headers)).json()
    assert bot_view["handoff_confidence_threshold"] == 0.4
    assert_error(
        await client.post(
            url, json={"triggers": {"confidence_threshold": 2}}, headers=admin.headers
        ),
        422,
    )
    assert_error(
        await client.post(
            url, json={"notification_settings": {"methods": ["pigeon"]}}, headers=admin.headers
        ),
        400,
    )
    agent = await accounts("agent")
    assert_error(await client.post(url, json={"enabled": False}, headers=agent.headers), 403)


async def test_the_assignee_hears_of_user_messages_in_app_once_until_read(
    client: httpx.AsyncClient, bot: dict, admin: Any, accounts: Any
) -> None:
    """A user writing while a human holds the conversation: the assignee gets an inbox entry
    (not one per message: one unread at a time), nobody else does, and a pending handoff
    (no assignee yet) notifies nobody."""
    agent = await accounts("agent")
    cid, hid = await open_handoff(client, bot, admin)

    async def notes(who: Any) -> list[dict]:
        r = await client.get("/api/notifications", headers=who.headers)
        return [n for n in r.json()["notifications"] if n["kind"] == "handoff.message"]

    await say(client, bot, "hello? anyone there?", cid)  # pending: nobody holds it yet
    assert await notes(agent) == []
    await client.post(f"/api/nectar-bots/handoffs/{hid}/assign", headers=agent.headers)
    await say(client, bot, "my link expired again", cid)
    await say(client, bot, "and now it says locked", cid)
    [note] = await notes(agent)
    assert note["title"] == "New message from Ada"
    assert note["body"] == "my link expired again"
    assert note["handoff_id"] == hid
    assert note["data"]["conversation_id"] == cid
    assert await notes(admin) == []
    r = await client.post(f"/api/notifications/{note['id']}/read", headers=agent.headers)
    assert r.status_code == 200, r.text
    await say(client, bot, "still locked", cid)
    newest = await notes(agent)
    assert [n["body"] for n in newest] == ["still locked", "my link expired again"]
