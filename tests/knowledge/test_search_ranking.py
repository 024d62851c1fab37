"""Search quality on the evaluation knowledge base, through the HTTP API."""

from __future__ import annotations

import httpx
import pytest

from nectar.settings import REPO_ROOT

KB = (REPO_ROOT.parent / "shared" / "eval" / "kb").resolve()


def kb_articles() -> list[tuple[str, str]]:
    if not KB.is_dir():
        pytest.skip(f"evaluation knowledge base not found at {KB}")
    articles = []
    for path in sorted(KB.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        articles.append((text.splitlines()[0].lstrip("# ").strip(), text))
    return articles


async def load_kb(client: httpx.AsyncClient, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    r = await client.post("/api/honey-jars", json={"name": "Hivebox"}, headers=headers)
    assert r.status_code == 201, r.text
    jar_id = r.json()["honey_jar"]["id"]
    ids = {}
    for title, text in kb_articles():
        r = await client.post(
            f"/api/honey-jars/{jar_id}/documents",
            json={"title": title, "content": text},
            headers=headers,
        )
        assert r.status_code == 201, r.text
        assert r.json()["document"]["chunks"] >= 1
        ids[title] = r.json()["document"]["id"]
    return jar_id, ids


async def test_each_title_finds_its_own_article_first(client: httpx.AsyncClient, admin) -> None:
    jar_id, ids = await load_kb(client, admin.headers)
    misses = []
    for title, doc_id in ids.items():
        r = await client.get(
            f"/api/honey-jars/{jar_id}/search", params={"q": title}, headers=admin.headers
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        if not results or results[0]["document_id"] != doc_id:
            misses.append((title, [x["title"] for x in results[:3]]))
    assert misses == []


async def test_question_words_find_the_right_article(client: httpx.AsyncClient, admin) -> None:
    jar_id, _ = await load_kb(client, admin.headers)
    cases = {
        "how do i reset my password": "password",
        "what linux distros does the desktop app run on": "desktop",
        "which data centre do you use for EU workspaces": "region",
    }
    for question, expected in cases.items():
        r = await client.get(
            f"/api/honey-jars/{jar_id}/search", params={"q": question}, headers=admin.headers
        )
        top = r.json()["results"][0]["title"].lower()
        assert expected in top, (question, top)


async def test_search_with_no_content_words_is_empty(client: httpx.AsyncClient, admin) -> None:
    jar_id, _ = await load_kb(client, admin.headers)
    r = await client.get(
        f"/api/honey-jars/{jar_id}/search", params={"q": "the and of"}, headers=admin.headers
    )
    assert r.status_code == 200
    assert r.json()["results"] == []
