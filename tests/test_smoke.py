import httpx


async def test_healthz(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_admin_creates_bot(client: httpx.AsyncClient, admin) -> None:
    r = await client.post("/api/nectar-bots", json={"name": "Support"}, headers=admin.headers)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["bot"]["api_key"].startswith("nb_")
