"""Honey Jars and their documents through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import assert_error, create_bot

URL = "/api/honey-jars"
PAGINATION_KEYS = {"page", "pages", "per_page", "total", "has_next", "has_prev"}
JAR_KEYS = {"id", "owner_id", "name", "description", "document_count", "created_at", "updated_at"}
DOC_KEYS = {
    "id",
    "jar_id",
    "title",
    "content_type",
    "filename",
    "size_bytes",
    "chunks",
    "created_at",
    "updated_at",
}
RESULT_KEYS = {"rank", "document_id", "title", "heading", "snippet", "score"}

GUIDE = """# Desktop app

Hivebox runs on Windows, macOS and Linux.

## Installing on Linux

Download the AppImage and mark it executable. Debian and Fedora packages exist too.

## Selective sync

Choose the folders to keep on this computer under Preferences > Sync.
"""


async def create_jar(
    client: httpx.AsyncClient, account: Any, name: str = "Docs", **fields: Any
) -> dict[str, Any]:
    r = await client.post(URL, json={"name": name, **fields}, headers=account.headers)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"message", "honey_jar"}
    jar: dict[str, Any] = body["honey_jar"]
    return jar


async def add_doc(
    client: httpx.AsyncClient, account: Any, jar_id: str, title: str, content: str, **extra: Any
) -> dict[str, Any]:
    r = await client.post(
        f"{URL}/{jar_id}/documents",
        json={"title": title, "content": content, **extra},
        headers=account.headers,
    )
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()["document"]
    return doc


async def upload(
    client: httpx.AsyncClient,
    account: Any,
    jar_id: str,
    filename: str,
    data: bytes,
    title: str | None = None,
) -> httpx.Response:
    return await client.post(
        f"{URL}/{jar_id}/documents",
        files={"file": (filename, data, "application/octet-stream")},
        data={"title": title} if title is not None else {},
        headers=account.headers,
    )


async def search(
    client: httpx.AsyncClient, account: Any, jar_id: str, q: str, **params: Any
) -> list[dict[str, Any]]:
    r = await client.get(
        f"{URL}/{jar_id}/search", params={"q": q, **params}, headers=account.headers
    )
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"query", "results"}
    results: list[dict[str, Any]] = r.json()["results"]
    return results


async def get_jar(client: httpx.AsyncClient, account: Any, jar_id: str) -> dict[str, Any]:
    r = await client.get(f"{URL}/{jar_id}", headers=account.headers)
    assert r.status_code == 200, r.text
    jar: dict[str, Any] = r.json()["honey_jar"]
    return jar


async def list_jars(client: httpx.AsyncClient, account: Any, **params: Any) -> dict[str, Any]:
    r = await client.get(URL, params=params, headers=account.headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == {"honey_jars", "pagination"}
    assert set(body["pagination"]) == PAGINATION_KEYS
    return body


async def rows(db: AsyncEngine, table: str, jar_id: str) -> int:
    async with db.connect() as conn:
        count = await conn.scalar(
            sa.text(f"SELECT count(*) FROM {table} WHERE jar_id = :jar").bindparams(
                sa.bindparam("jar", type_=sa.Uuid())
            ),
            {"jar": uuid.UUID(jar_id)},
        )
    return int(count or 0)


# --- jars -------------------------------------------------------------------------------------


async def test_create_get_and_update_a_jar(client: httpx.AsyncClient, admin: Any) -> None:
    r = await client.post(
        URL, json={"name": "  Billing  ", "description": "Invoices"}, headers=admin.headers
    )

    assert r.status_code == 201, r.text
    jar = r.json()["honey_jar"]
    assert set(jar) == JAR_KEYS
    assert jar["name"] == "Billing"
    assert jar["description"] == "Invoices"
    assert jar["document_count"] == 0
    assert jar["owner_id"] == str(admin.id)
    assert await get_jar(client, admin, jar["id"]) == jar

    r = await client.put(f"{URL}/{jar['id']}", json={"name": "Invoices"}, headers=admin.headers)
    assert r.status_code == 200, r.text
    updated = r.json()["honey_jar"]
    assert updated["name"] == "Invoices"
    assert updated["description"] == "Invoices"  # not sent, kept
    assert datetime.fromisoformat(updated["updated_at"]) >= datetime.fromisoformat(
        jar["updated_at"]
    )
    assert await get_jar(client, admin, jar["id"]) == updated


async def test_invalid_jar_is_422_and_not_created(client: httpx.AsyncClient, admin: Any) -> None:
    bodies: list[Any] = [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 101},
        {"name": "A", "description": "d" * 2001},
        {"name": "A", "colour": "red"},
        ["not", "an", "object"],
    ]
    for body in bodies:
        assert_error(await client.post(URL, json=body, headers=admin.headers), 422)
    assert (await list_jars(client, admin))["pagination"]["total"] == 0


async def test_list_jars_paginates_searches_and_counts_documents(
    client: httpx.AsyncClient, admin: Any
) -> None:
    names = ["Alpha docs", "Beta docs", "alpha notes", "Gamma", "100% uptime"]
    jars = {name: await create_jar(client, admin, name) for name in names}
    await add_doc(client, admin, jars["Gamma"]["id"], "One", "first")
    await add_doc(client, admin, jars["Gamma"]["id"], "Two", "second")

    first = await list_jars(client, admin, per_page=2)
    assert first["pagination"] == {
        "page": 1,
        "pages": 3,
        "per_page": 2,
        "total": 5,
        "has_next": True,
        "has_prev": False,
    }
    last = await list_jars(client, admin, per_page=2, page=3)
    assert len(last["honey_jars"]) == 1
    assert last["pagination"]["has_next"] is False
    assert last["pagination"]["has_prev"] is True
    middle = await list_jars(client, admin, per_page=2, page=2)
    seen = [j["id"] for page in (first, middle, last) for j in page["honey_jars"]]
    assert sorted(seen) == sorted(j["id"] for j in jars.values())

    found = await list_jars(client, admin, search="ALPHA")
    assert sorted(j["name"] for j in found["honey_jars"]) == ["Alpha docs", "alpha notes"]
    # LIKE wildcards in the search are literal characters.
    assert [j["name"] for j in (await list_jars(client, admin, search="%"))["honey_jars"]] == [
        "100% uptime"
    ]
    counts = {
        j["name"]: j["document_count"] for j in (await list_jars(client, admin))["honey_jars"]
    }
    assert counts == {name: 2 if name == "Gamma" else 0 for name in names}
    assert (await get_jar(client, admin, jars["Gamma"]["id"]))["document_count"] == 2


async def test_delete_jar_removes_its_documents_and_unlinks_it_from_bots(
    client: httpx.AsyncClient, admin: Any, db: AsyncEngine, backend: str
) -> None:
    jar = await create_jar(client, admin, "Old")
    keep = await create_jar(client, admin, "Keep")
    doc = await add_doc(client, admin, jar["id"], "Desktop app", GUIDE)
    await add_doc(client, admin, jar["id"], "Zebra", "Zebras are striped.")
    await add_doc(client, admin, keep["id"], "Kept", "Kept zebra notes.")
    bot = await create_bot(client, admin, honey_jar_ids=[jar["id"], keep["id"]])
    assert bot["honey_jar_ids"] == [jar["id"], keep["id"]]

    r = await client.delete(f"{URL}/{jar['id']}", headers=admin.headers)

    assert r.status_code == 204
    assert r.content == b""
    assert_error(await client.get(f"{URL}/{jar['id']}", headers=admin.headers), 404)
    r = await client.get(f"{URL}/{jar['id']}/documents/{doc['id']}", headers=admin.headers)
    assert_error(r, 404)
    assert_error(await client.delete(f"{URL}/{jar['id']}", headers=admin.headers), 404)
    assert await rows(db, "honey_jar_documents", jar["id"]) == 0
    assert await rows(db, "honey_jar_chunks", jar["id"]) == 0
    r = await client.get(f"/api/nectar-bots/{bot['id']}", headers=admin.headers)
    assert r.json()["honey_jar_ids"] == [keep["id"]]
    assert [h["title"] for h in await search(client, admin, keep["id"], "zebra")] == ["Kept"]
    assert [j["name"] for j in (await list_jars(client, admin))["honey_jars"]] == ["Keep"]
    if backend == "sqlite":  # the FTS index forgot the deleted chunks too
        async with db.connect() as conn:
            stale = await conn.scalar(
                sa.text(
                    "SELECT count(*) FROM honey_jar_chunks_fts "
                    "WHERE honey_jar_chunks_fts MATCH 'striped OR appimage'"
                )
            )
        assert stale == 0


# --- documents --------------------------------------------------------------------------------


async def test_add_a_document_as_json_and_read_it_back(
    client: httpx.AsyncClient, admin: Any
) -> None:
    jar = await create_jar(client, admin)
    content = GUIDE + "\nCafé crème costs €3.\n"

    r = await client.post(
        f"{URL}/{jar['id']}/documents",
        json={"title": "Desktop app", "content": content},
        headers=admin.headers,
    )

    assert r.status_code == 201, r.text
    assert set(r.json()) == {"message", "document"}
    doc = r.json()["document"]
    assert set(doc) == DOC_KEYS  # the content is not echoed back
    assert doc["title"] == "Desktop app"
    assert doc["jar_id"] == jar["id"]
    assert doc["content_type"] == "text/markdown"
    assert doc["filename"] is None
    assert doc["size_bytes"] == len(content.encode("utf-8"))
    assert doc["chunks"] == 3  # intro, Installing on Linux, Selective sync

    r = await client.get(f"{URL}/{jar['id']}/documents/{doc['id']}", headers=admin.headers)
    assert r.status_code == 200, r.text
    full = r.json()["document"]
    assert full["content"] == content
    assert {k: v for k, v in full.items() if k != "content"} == doc

    r = await client.get(f"{URL}/{jar['id']}/documents", headers=admin.headers)
    assert r.status_code == 200, r.text
    listing = r.json()
    assert set(listing) == {"documents", "pagination"}
    assert listing["documents"] == [doc]
    assert listing["pagination"]["total"] == 1
    assert (await get_jar(client, admin, jar["id"]))["document_count"] == 1

    hits = await search(client, admin, jar["id"], "appimage")
    assert [(h["document_id"], h["heading"]) for h in hits] == [
        (doc["id"], "Desktop app > Installing on Linux")
    ]


async def test_html_document_as_json_is_searchable_without_its_markup(
    client: httpx.AsyncClient, admin: Any
) -> None:
    jar = await create_jar(client, admin)
    html = (
        "<h1>Plans</h1><p>Team costs &euro;8.</p><script>var trackingPixel = 1;</script>"
        "<h2>Refunds</h2><p>Within 30 days.</p>"
    )
    doc = await add_doc(client, admin, jar["id"], "Plans", html, content_type="text/html")

    assert doc["content_type"] == "text/html"
    assert doc["chunks"] == 2
    assert [h["heading"] for h in await search(client, admin, jar["id"], "refunds")] == [
        "Plans > Refunds"
    ]
    assert await search(client, admin, jar["id"], "trackingpixel script") == []


async def test_invalid_document_is_422_and_not_stored(
    client: httpx.AsyncClient, admin: Any
) -> None:
    jar = await create_jar(client, admin)
    bodies: list[Any] = [
        {"content": "no title"},
        {"title": "No content"},
        {"title": "", "content": "x"},
        {"title": "Empty", "content": ""},
        {"title": "Blank", "content": " \n\t\n "},
        {"title": "t" * 301, "content": "x"},
        {"title": "PDF", "content": "x", "content_type": "application/pdf"},
        {"title": "Extra", "content": "x", "owner": "me"},
        ["not", "an", "object"],
    ]
    for body in bodies:
        r = await client.post(f"{URL}/{jar['id']}/documents", json=body, headers=admin.headers)
        assert r.status_code == 422, (body, r.text)
        assert_error(r, 422)
    assert (await get_jar(client, admin, jar["id"]))["document_count"] == 0


async def test_document_body_errors(client: httpx.AsyncClient, admin: Any) -> None:
    jar = await create_jar(client, admin)
    path = f"{URL}/{jar['id']}/documents"
    json_headers = {**admin.headers, "Content-Type": "application/json"}

    assert_error(await client.post(path, content=b"{not json", headers=json_headers), 422)
    too_long = {"title": "Long", "content": "word " * 100_001}  # 500,005 characters
    r = await client.post(path, json=too_long, headers=admin.headers)
    assert r.status_code in (413, 422), r.text
    assert_error(r, r.status_code)
    xml = {**admin.headers, "Content-Type": "application/xml"}
    assert_error(await client.post(path, content=b"<doc/>", headers=xml), 415)
    r = await client.post(
        f"{URL}/{uuid.uuid4()}/documents",
        json={"title": "t", "content": "c"},
        headers=admin.headers,
    )
    assert_error(r, 404, "honey_jar_not_found")
    assert (await get_jar(client, admin, jar["id"]))["document_count"] == 0


async def test_upload_files_takes_the_title_from_the_file(
    client: httpx.AsyncClient, admin: Any
) -> None:
    jar = await create_jar(client, admin)
    cases = [
        ("guide.md", GUIDE.encode(), None, "Desktop app", "text/markdown"),
        ("notes.markdown", b"Intro line.\n\n## Learn C#\n\nText.", None, "Learn C#", None),
        (
            "getting-started_guide.txt",
            b"Plain text, no heading.",
            None,
            "getting started guide",
            "text/plain",
        ),
        (
            "page.html",
            b"<html><head><title>Q&amp;A &ndash; sync</title></head><body><h1>Other</h1>"
            b"<p>Sync pauses on metered networks.</p></body></html>",
            None,
            "Q&A \u2013 sync",
            "text/html",
        ),
        (
            "heading.html",
            b"<body><h2>Selective <em>sync</em></h2><p>x</p></body>",
            None,
            "Selective sync",
            None,
        ),
        ("named.md", b"# Ignored heading\n\nBody.", "  Given title ", "Given title", None),
        ("bom.txt", "\ufeffWith a byte order mark.".encode(), None, "bom", None),
    ]
    for filename, data, given, title, content_type in cases:
        r = await upload(client, admin, jar["id"], filename, data, given)
        assert r.status_code == 201, (filename, r.text)
        doc = r.json()["document"]
        assert doc["title"] == title, filename
        assert doc["filename"] == filename
        assert doc["size_bytes"] == len(data.decode("utf-8-sig").encode())
        if content_type:
            assert doc["content_type"] == content_type, filename
        stored = await client.get(f"{URL}/{jar['id']}/documents/{doc['id']}", headers=admin.headers)
        assert stored.json()["document"]["content"] == data.decode("utf-8-sig")

    assert (await get_jar(client, admin, jar["id"]))["document_count"] == len(cases)
    assert [h["title"] for h in await search(client, admin, jar["id"], "metered")] == [
        "Q&A \u2013 sync"
    ]


async def test_rejected_uploads_store_nothing(client: httpx.AsyncClient, admin: Any) -> None:
    jar = await create_jar(client, admin)
    cases = [
        ("manual.pdf", b"%PDF-1.7 binary", 415),
        ("noextension", b"plain words", 415),
        ("latin1.md", "# Café\n\ncrème brûlée".encode("latin-1"), 415),
        ("binary.txt", b"text\x00\x01\x02", 415),
        ("empty.md", b"", 422),
        ("blank.txt", b"\n \n\t\n", 422),
        ("long.txt", b"word " * 120_001, 422),  # 600,005 characters, under the body limit
        ("huge.txt", b"x" * 1_100_000, 413),  # over the 1 MiB body limit
    ]
    for filename, data, status in cases:
        r = await upload(client, admin, jar["id"], filename, data)
        assert r.status_code == status, (filename, r.text)
        body = assert_error(r, status)
        if status == 415 or filename in ("empty.md", "blank.txt"):
            assert filename in body["detail"]  # says which file and why
    assert (await get_jar(client, admin, jar["id"]))["document_count"] == 0


async def test_multipart_without_a_file_is_rejected(client: httpx.AsyncClient, admin: Any) -> None:
    jar = await create_jar(client, admin)

    r = await client.post(
        f"{URL}/{jar['id']}/documents",
        files={"other": ("a.md", b"# A", "text/markdown")},
        headers=admin.headers,
    )

    assert r.status_code in (400, 422), r.text
    assert_error(r, r.status_code)


async def test_update_rechunks_and_search_follows_the_new_text(
    client: httpx.AsyncClient, admin: Any
) -> None:
    jar = await create_jar(client, admin)
    doc = await add_doc(client, admin, jar["id"], "Breakfast", "The spread is marmalade.")
    assert [h["document_id"] for h in await search(client, admin, jar["id"], "marmalade")] == [
        doc["id"]
    ]

    new = "# Breakfast\n\nNow we serve ratatouille.\n\n## Drinks\n\nEspresso only."
    r = await client.put(
        f"{URL}/{jar['id']}/documents/{doc['id']}", json={"content": new}, headers=admin.headers
    )

    assert r.status_code == 200, r.text
    updated = r.json()["document"]
    assert updated["content"] == new
    assert updated["title"] == "Breakfast"
    assert updated["chunks"] == 2
    assert updated["size_bytes"] == len(new.encode())
    assert await search(client, admin, jar["id"], "marmalade") == []
    hits = await search(client, admin, jar["id"], "espresso")
    assert [(h["document_id"], h["heading"]) for h in hits] == [(doc["id"], "Breakfast > Drinks")]

    r = await client.put(
        f"{URL}/{jar['id']}/documents/{doc['id']}", json={"title": "Brunch"}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["document"]["content"] == new
    hits = await search(client, admin, jar["id"], "espresso")
    assert [h["heading"] for h in hits] == ["Brunch > Breakfast > Drinks"]
    assert {h["title"] for h in await search(client, admin, jar["id"], "brunch")} == {"Brunch"}

    for body in ({"content": ""}, {"content": "  "}, {"title": ""}, {"chunks": 3}):
        r = await client.put(
            f"{URL}/{jar['id']}/documents/{doc['id']}", json=body, headers=admin.headers
        )
        assert_error(r, 422)
    other = await create_jar(client, admin, "Other")
    r = await client.put(
        f"{URL}/{other['id']}/documents/{doc['id']}", json={"title": "x"}, headers=admin.headers
    )
    assert_error(r, 404, "document_not_found")
    r = await client.get(f"{URL}/{jar['id']}/documents/{doc['id']}", headers=admin.headers)
    assert r.json()["document"]["title"] == "Brunch"


async def test_delete_document_removes_it_from_search(
    client: httpx.AsyncClient, admin: Any, db: AsyncEngine
) -> None:
    jar = await create_jar(client, admin)
    gone = await add_doc(client, admin, jar["id"], "Trash", "Deleted files stay 30 days in trash.")
    kept = await add_doc(client, admin, jar["id"], "Versions", "Old versions stay 30 days too.")

    r = await client.delete(f"{URL}/{jar['id']}/documents/{gone['id']}", headers=admin.headers)

    assert r.status_code == 204
    assert r.content == b""
    assert [h["document_id"] for h in await search(client, admin, jar["id"], "30 days")] == [
        kept["id"]
    ]
    assert await search(client, admin, jar["id"], "trash") == []
    r = await client.get(f"{URL}/{jar['id']}/documents/{gone['id']}", headers=admin.headers)
    assert_error(r, 404, "document_not_found")
    r = await client.delete(f"{URL}/{jar['id']}/documents/{gone['id']}", headers=admin.headers)
    assert_error(r, 404, "document_not_found")
    assert (await get_jar(client, admin, jar["id"]))["document_count"] == 1
    assert await rows(db, "honey_jar_chunks", jar["id"]) == kept["chunks"]


async def test_document_list_paginates_without_content(
    client: httpx.AsyncClient, admin: Any
) -> None:
    jar = await create_jar(client, admin)
    ids = [
        (await add_doc(client, admin, jar["id"], f"Doc {i}", f"text {i}"))["id"] for i in range(3)
    ]

    r = await client.get(f"{URL}/{jar['id']}/documents?per_page=2", headers=admin.headers)
    page1 = r.json()
    r = await client.get(f"{URL}/{jar['id']}/documents?per_page=2&page=2", headers=admin.headers)
    page2 = r.json()

    assert page1["pagination"]["total"] == 3
    assert page1["pagination"]["has_next"] is True
    assert [d["id"] for d in page1["documents"] + page2["documents"]] == ids  # oldest first
    assert all(set(d) == DOC_KEYS for d in page1["documents"] + page2["documents"])


# --- search -----------------------------------------------------------------------------------


async def test_search_results_have_the_documented_shape(
    client: httpx.AsyncClient, admin: Any
) -> None:
    jar = await create_jar(client, admin)
    doc = await add_doc(client, admin, jar["id"], "Desktop app", GUIDE)
    await add_doc(client, admin, jar["id"], "Mobile", "The mobile app syncs folders on Wi-Fi.")

    r = await client.get(
        f"{URL}/{jar['id']}/search", params={"q": "sync folders"}, headers=admin.headers
    )

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == "sync folders"
    results = body["results"]
    assert len(results) >= 2
    assert all(set(x) == RESULT_KEYS for x in results)
    assert [x["rank"] for x in results] == list(range(1, len(results) + 1))
    scores = [x["score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    # The section about syncing folders wins, found by its heading as well as its words.
    assert results[0]["document_id"] == doc["id"]
    assert results[0]["heading"] == "Desktop app > Selective sync"
    assert results[0]["title"] == "Desktop app"
    assert results[0]["snippet"].startswith("Choose the folders")

    assert len(await search(client, admin, jar["id"], "sync folders", limit=1)) == 1
    assert await search(client, admin, jar["id"], "quantum") == []


async def test_search_rejects_bad_parameters(client: httpx.AsyncClient, admin: Any) -> None:
    jar = await create_jar(client, admin)
    bad: list[dict[str, Any]] = [
        {},
        {"q": ""},
        {"q": "x" * 501},
        {"q": "sync", "limit": 0},
        {"q": "sync", "limit": 51},
        {"q": "sync", "limit": "ten"},
    ]
    for params in bad:
        r = await client.get(f"{URL}/{jar['id']}/search", params=params, headers=admin.headers)
        assert r.status_code == 422, (params, r.text)
        assert_error(r, 422)
    assert await search(client, admin, jar["id"], "x" * 500, limit=50) == []


async def test_search_syntax_in_a_query_is_just_words(
    client: httpx.AsyncClient, admin: Any
) -> None:
    jar = await create_jar(client, admin)
    doc = await add_doc(client, admin, jar["id"], "Desktop app", GUIDE)
    queries = [
        '"unbalanced sync',
        "sync OR",
        "NEAR(sync app)",
        "-sync",
        "sync*",
        "heading:sync",
        "sync & !app | (linux",
        "C++ & <b>'; DROP TABLE honey_jar_chunks;--",
        "é ü ß 日本",
    ]
    for q in queries:
        r = await client.get(f"{URL}/{jar['id']}/search", params={"q": q}, headers=admin.headers)
        assert r.status_code == 200, (q, r.text)
        if "sync" in q:
            assert doc["id"] in {x["document_id"] for x in r.json()["results"]}, q
    assert len(await search(client, admin, jar["id"], "appimage")) == 1


async def test_search_never_returns_another_jars_documents(
    client: httpx.AsyncClient, admin: Any
) -> None:
    apples = await create_jar(client, admin, "Apples")
    pears = await create_jar(client, admin, "Pears")
    apple = await add_doc(client, admin, apples["id"], "Apple care", "Fruit: keep apples cold.")
    pear = await add_doc(client, admin, pears["id"], "Pear care", "Fruit: keep pears dry.")

    in_apples = await search(client, admin, apples["id"], "fruit apples pears")
    in_pears = await search(client, admin, pears["id"], "fruit apples pears")

    assert [h["document_id"] for h in in_apples] == [apple["id"]]
    assert [h["document_id"] for h in in_pears] == [pear["id"]]
    assert await search(client, admin, apples["id"], "pears dry") == []
    assert await search(client, admin, pears["id"], "apples cold") == []


# --- who may do what --------------------------------------------------------------------------


async def test_members_see_and_change_only_their_own_jars(
    client: httpx.AsyncClient, admin: Any, accounts: Any
) -> None:
    owner = await accounts("member")
    other = await accounts("member")
    jar = await create_jar(client, owner, "Mine")
    doc = await add_doc(client, owner, jar["id"], "Secret", "The vault code is 1234.")
    admins = await create_jar(client, admin, "Admin's")

    assert [j["id"] for j in (await list_jars(client, owner))["honey_jars"]] == [jar["id"]]
    assert (await list_jars(client, other))["honey_jars"] == []
    path = f"{URL}/{jar['id']}"
    attempts = [
        ("GET", path, {}),
        ("PUT", path, {"json": {"name": "Taken"}}),
        ("DELETE", path, {}),
        ("GET", f"{path}/documents", {}),
        ("POST", f"{path}/documents", {"json": {"title": "Spam", "content": "spam"}}),
        ("GET", f"{path}/documents/{doc['id']}", {}),
        ("PUT", f"{path}/documents/{doc['id']}", {"json": {"content": "changed"}}),
        ("DELETE", f"{path}/documents/{doc['id']}", {}),
        ("GET", f"{path}/search?q=vault", {}),
        ("GET", f"{URL}/{admins['id']}", {}),
    ]
    for method, url, extra in attempts:
        r = await client.request(method, url, headers=other.headers, **extra)
        assert_error(r, 404, "honey_jar_not_found")

    # Nothing changed, and the admin sees and edits every jar.
    assert (await get_jar(client, owner, jar["id"]))["name"] == "Mine"
    assert len(await search(client, owner, jar["id"], "vault")) == 1
    everyone = {j["id"] for j in (await list_jars(client, admin))["honey_jars"]}
    assert everyone == {jar["id"], admins["id"]}
    r = await client.put(path, json={"description": "checked"}, headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json()["honey_jar"]["owner_id"] == str(owner.id)
    r = await client.put(path, json={"name": "Renamed"}, headers=owner.headers)
    assert r.status_code == 200, r.text


async def test_agents_read_and_search_but_cannot_change_anything(
    client: httpx.AsyncClient, admin: Any, accounts: Any
) -> None:
    agent = await accounts("agent")
    jar = await create_jar(client, admin, "Support")
    doc = await add_doc(client, admin, jar["id"], "Desktop app", GUIDE)
    path = f"{URL}/{jar['id']}"

    assert [j["id"] for j in (await list_jars(client, agent))["honey_jars"]] == [jar["id"]]
    assert (await get_jar(client, agent, jar["id"]))["document_count"] == 1
    r = await client.get(f"{path}/documents/{doc['id']}", headers=agent.headers)
    assert r.json()["document"]["content"] == GUIDE
    assert (await client.get(f"{path}/documents", headers=agent.headers)).status_code == 200
    assert len(await search(client, agent, jar["id"], "appimage")) == 1

    attempts = [
        ("POST", URL, {"json": {"name": "Agent's"}}),
        ("PUT", path, {"json": {"name": "Taken"}}),
        ("DELETE", path, {}),
        ("POST", f"{path}/documents", {"json": {"title": "t", "content": "c"}}),
        ("POST", f"{path}/documents", {"files": {"file": ("a.md", b"# A\n\nb", "text/plain")}}),
        ("PUT", f"{path}/documents/{doc['id']}", {"json": {"content": "changed"}}),
        ("DELETE", f"{path}/documents/{doc['id']}", {}),
    ]
    for method, url, extra in attempts:
        r = await client.request(method, url, headers=agent.headers, **extra)
        assert_error(r, 403)

    assert (await list_jars(client, admin))["pagination"]["total"] == 1
    unchanged = await get_jar(client, admin, jar["id"])
    assert (unchanged["name"], unchanged["document_count"]) == ("Support", 1)
    r = await client.get(f"{path}/documents/{doc['id']}", headers=admin.headers)
    assert r.json()["document"]["content"] == GUIDE


async def test_anonymous_and_bad_tokens_get_401(client: httpx.AsyncClient, admin: Any) -> None:
    jar = await create_jar(client, admin)
    path = f"{URL}/{jar['id']}"
    requests = [
        ("GET", URL, {}),
        ("POST", URL, {"json": {"name": "x"}}),
        ("GET", path, {}),
        ("PUT", path, {"json": {"name": "x"}}),
        ("DELETE", path, {}),
        ("POST", f"{path}/documents", {"json": {"title": "t", "content": "c"}}),
        ("GET", f"{path}/documents", {}),
        ("GET", f"{path}/search?q=x", {}),
    ]
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        for method, url, extra in requests:
            r = await client.request(method, url, headers=headers, **extra)
            assert_error(r, 401)
    assert (await get_jar(client, admin, jar["id"]))["name"] == "Docs"


# --- linking jars to bots ---------------------------------------------------------------------


async def test_a_member_cannot_link_another_members_jar(
    client: httpx.AsyncClient, admin: Any, accounts: Any
) -> None:
    alice = await accounts("member")
    bob = await accounts("member")
    alices = await create_jar(client, alice, "Alice's")
    bobs = await create_jar(client, bob, "Bob's")

    r = await client.post(
        "/api/nectar-bots",
        json={"name": "Thief", "honey_jar_ids": [bobs["id"], alices["id"]]},
        headers=bob.headers,
    )
    body = assert_error(r, 404, "honey_jar_not_found")
    assert alices["id"] in body["detail"]
    r = await client.get("/api/nectar-bots", headers=bob.headers)
    assert r.json()["bots"] == []  # nothing half-created

    bot = await create_bot(client, bob, honey_jar_ids=[bobs["id"]])
    r = await client.put(
        f"/api/nectar-bots/{bot['id']}",
        json={"honey_jar_ids": [alices["id"]]},
        headers=bob.headers,
    )
    body = assert_error(r, 404, "honey_jar_not_found")
    assert alices["id"] in body["detail"]
    r = await client.get(f"/api/nectar-bots/{bot['id']}", headers=bob.headers)
    assert r.json()["honey_jar_ids"] == [bobs["id"]]

    own = await create_bot(client, alice, honey_jar_ids=[alices["id"]])
    assert own["honey_jar_ids"] == [alices["id"]]


async def test_an_admin_links_anyones_jars_in_order_without_duplicates(
    client: httpx.AsyncClient, admin: Any, accounts: Any
) -> None:
    member = await accounts("member")
    theirs = await create_jar(client, member, "Theirs")
    mine = await create_jar(client, admin, "Mine")

    bot = await create_bot(client, admin, honey_jar_ids=[theirs["id"], mine["id"], theirs["id"]])

    assert bot["honey_jar_ids"] == [theirs["id"], mine["id"]]
    r = await client.put(
        f"/api/nectar-bots/{bot['id']}",
        json={"honey_jar_ids": [mine["id"], theirs["id"], mine["id"]]},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["bot"]["honey_jar_ids"] == [mine["id"], theirs["id"]]
    r = await client.get(f"/api/nectar-bots/{bot['id']}", headers=admin.headers)
    assert r.json()["honey_jar_ids"] == [mine["id"], theirs["id"]]

    unknown = str(uuid.uuid4())
    r = await client.put(
        f"/api/nectar-bots/{bot['id']}",
        json={"honey_jar_ids": [mine["id"], unknown]},
        headers=admin.headers,
    )
    body = assert_error(r, 404, "honey_jar_not_found")
    assert unknown in body["detail"]
    r = await client.get(f"/api/nectar-bots/{bot['id']}", headers=admin.headers)
    assert r.json()["honey_jar_ids"] == [mine["id"], theirs["id"]]
    r = await client.post(
        "/api/nectar-bots",
        json={"name": "Ghost", "honey_jar_ids": [unknown]},
        headers=admin.headers,
    )
    assert_error(r, 404, "honey_jar_not_found")


async def test_words_with_accents_and_other_scripts_are_searchable(
    client: httpx.AsyncClient, admin: Any
) -> None:
    jar = await create_jar(client, admin)
    german = await add_doc(
        client, admin, jar["id"], "Kündigung", "Die Kündigungsfrist beträgt drei Monate."
    )
    french = await add_doc(client, admin, jar["id"], "Café", "Le café ouvre à 8 heures.")
    await add_doc(client, admin, jar["id"], "English", "The office opens at nine.")

    hits = await search(client, admin, jar["id"], "Wie lang ist die Kündigungsfrist?")
    assert [h["document_id"] for h in hits] == [german["id"]]
    assert [h["document_id"] for h in await search(client, admin, jar["id"], "café")] == [
        french["id"]
    ]
