"""Honey Jars and their documents. Admins see every jar; members their own; agents may read."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Literal

import sqlalchemy as sa
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nectar.db import utcnow
from nectar.errors import Forbidden
from nectar.knowledge import search as fts
from nectar.knowledge.chunking import chunk_document
from nectar.knowledge.exceptions import (
    AmbiguousJarName,
    DocumentNotFound,
    ImportOwnerNotFound,
    JarNotFound,
)
from nectar.knowledge.models import BotHoneyJar, Chunk, Document, HoneyJar
from nectar.knowledge.schemas import DocumentCreate, DocumentUpdate, JarCreate, JarUpdate
from nectar.pagination import PageParams, Pagination
from nectar.users.models import Role, User


def _can_read(actor: User, jar: HoneyJar) -> bool:
    return actor.role in (Role.admin.value, Role.agent.value) or jar.owner_id == actor.id


def _can_write(actor: User, jar: HoneyJar) -> bool:
    return actor.role == Role.admin.value or (
        actor.role == Role.member.value and jar.owner_id == actor.id
    )


async def get_jar(
    session: AsyncSession, actor: User, jar_id: uuid.UUID, *, write: bool = False
) -> HoneyJar:
    jar = await session.get(HoneyJar, jar_id)
    if jar is None or not _can_read(actor, jar):
        raise JarNotFound()
    if write and not _can_write(actor, jar):
        raise Forbidden("only the jar's owner or an admin may change it")
    return jar


async def document_counts(
    session: AsyncSession, jar_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, int]:
    ids = list(jar_ids)
    if not ids:
        return {}
    rows = await session.exec(
        select(Document.jar_id, func.count())
        .where(col(Document.jar_id).in_(ids))
        .group_by(col(Document.jar_id))
    )
    return {jar_id: count for jar_id, count in rows}


async def create_jar(session: AsyncSession, owner: User, data: JarCreate) -> HoneyJar:
    if owner.role == Role.agent.value:
        raise Forbidden("agents cannot create honey jars")
    jar = HoneyJar(owner_id=owner.id, name=data.name, description=data.description)
    session.add(jar)
    await session.flush()
    return jar


async def list_jars(
    session: AsyncSession, actor: User, page: PageParams, search: str | None
) -> tuple[list[HoneyJar], Pagination]:
    query = select(HoneyJar)
    if actor.role == Role.member.value:
        query = query.where(HoneyJar.owner_id == actor.id)
    if search:
        escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(func.lower(HoneyJar.name).like(f"%{escaped}%", escape="\\"))
    total = (await session.exec(select(func.count()).select_from(query.subquery()))).one()
    rows = await session.exec(
        query.order_by(col(HoneyJar.created_at).desc(), col(HoneyJar.id))
        .offset(page.offset)
        .limit(page.per_page)
    )
    return list(rows), page.result(total)


async def update_jar(
    session: AsyncSession, actor: User, jar_id: uuid.UUID, data: JarUpdate
) -> HoneyJar:
    jar = await get_jar(session, actor, jar_id, write=True)
    if data.name is not None:
        jar.name = data.name
    if data.description is not None:
        jar.description = data.description
    jar.updated_at = utcnow()
    session.add(jar)
    await session.flush()
    return jar


async def delete_jar(session: AsyncSession, actor: User, jar_id: uuid.UUID) -> None:
    """Deletes the jar's documents and unlinks it from every bot."""
    jar = await get_jar(session, actor, jar_id, write=True)
    await session.delete(jar)
    await session.flush()


# --- documents --------------------------------------------------------------------------------


async def _write_chunks(session: AsyncSession, doc: Document) -> None:
    pieces = chunk_document(doc.title, doc.content, doc.content_type)
    session.add_all(
        Chunk(
            document_id=doc.id,
            jar_id=doc.jar_id,
            position=piece.position,
            heading=piece.heading,
            body=piece.body,
        )
        for piece in pieces
    )
    doc.chunk_count = len(pieces)


async def add_document(
    session: AsyncSession, actor: User, jar_id: uuid.UUID, data: DocumentCreate
) -> Document:
    jar = await get_jar(session, actor, jar_id, write=True)
    doc = Document(
        jar_id=jar.id,
        title=data.title,
        content=data.content,
        content_type=data.content_type,
        filename=data.filename,
        size_bytes=len(data.content.encode()),
    )
    session.add(doc)
    await session.flush()
    await _write_chunks(session, doc)
    jar.updated_at = utcnow()
    session.add_all([doc, jar])
    await session.flush()
    return doc


async def get_document(
    session: AsyncSession, actor: User, jar_id: uuid.UUID, doc_id: uuid.UUID, *, write: bool = False
) -> Document:
    await get_jar(session, actor, jar_id, write=write)
    doc = await session.get(Document, doc_id)
    if doc is None or doc.jar_id != jar_id:
        raise DocumentNotFound()
    return doc


async def list_documents(
    session: AsyncSession, actor: User, jar_id: uuid.UUID, page: PageParams
) -> tuple[list[Document], Pagination]:
    await get_jar(session, actor, jar_id)
    query = select(Document).where(Document.jar_id == jar_id)
    total = (await session.exec(select(func.count()).select_from(query.subquery()))).one()
    rows = await session.exec(
        query.order_by(col(Document.created_at), col(Document.id))
        .offset(page.offset)
        .limit(page.per_page)
    )
    return list(rows), page.result(total)


async def update_document(
    session: AsyncSession,
    actor: User,
    jar_id: uuid.UUID,
    doc_id: uuid.UUID,
    data: DocumentUpdate,
) -> Document:
    doc = await get_document(session, actor, jar_id, doc_id, write=True)
    for field, value in data.model_dump(exclude_none=True).items():
        setattr(doc, field, value)
    doc.size_bytes = len(doc.content.encode())
    doc.updated_at = utcnow()
    await session.exec(sa.delete(Chunk).where(col(Chunk.document_id) == doc.id))
    await _write_chunks(session, doc)
    session.add(doc)
    await session.flush()
    return doc


async def delete_document(
    session: AsyncSession, actor: User, jar_id: uuid.UUID, doc_id: uuid.UUID
) -> None:
    doc = await get_document(session, actor, jar_id, doc_id, write=True)
    await session.delete(doc)
    await session.flush()


async def search_jar(
    session: AsyncSession, actor: User, jar_id: uuid.UUID, query: str, limit: int
) -> list[fts.Hit]:
    await get_jar(session, actor, jar_id)
    return await fts.search(await session.connection(), [jar_id], query, limit)


# --- bots' links to jars ----------------------------------------------------------------------


async def check_linkable(session: AsyncSession, actor: User, jar_ids: list[uuid.UUID]) -> None:
    """Only a jar's owner or an admin may let a bot answer from it."""
    if not jar_ids:
        return
    jars = {
        jar.id: jar
        for jar in await session.exec(select(HoneyJar).where(col(HoneyJar.id).in_(jar_ids)))
    }
    for jar_id in jar_ids:
        jar = jars.get(jar_id)
        if jar is None or (actor.role != Role.admin.value and jar.owner_id != actor.id):
            raise JarNotFound(jar_id)


async def set_bot_jars(session: AsyncSession, bot_id: uuid.UUID, jar_ids: list[uuid.UUID]) -> None:
    await session.exec(sa.delete(BotHoneyJar).where(col(BotHoneyJar.bot_id) == bot_id))
    session.add_all(
        BotHoneyJar(bot_id=bot_id, jar_id=jar_id, position=i) for i, jar_id in enumerate(jar_ids)
    )
    await session.flush()


async def jars_of_bots(
    session: AsyncSession, bot_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    ids = list(bot_ids)
    result: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    if not ids:
        return result
    rows = await session.exec(
        select(BotHoneyJar.bot_id, BotHoneyJar.jar_id)
        .where(col(BotHoneyJar.bot_id).in_(ids))
        .order_by(col(BotHoneyJar.bot_id), col(BotHoneyJar.position))
    )
    for bot_id, jar_id in rows:
        result[bot_id].append(jar_id)
    return result


# --- importing files (``nectar jars import``) -------------------------------------------------

ImportOutcome = Literal["added", "updated", "unchanged"]


async def import_owner(session: AsyncSession, email: str | None) -> User:
    """Who an import acts as and who owns a jar it creates: that user, else the first admin."""
    if email is not None:
        query = select(User).where(User.email == email.strip().lower())
        user = (await session.exec(query)).first()
        if user is None:
            raise ImportOwnerNotFound(f"no user with the email {email}")
        return user
    query = (
        select(User)
        .where(User.role == Role.admin.value, col(User.is_active).is_(True))
        .order_by(col(User.created_at), col(User.id))
        .limit(1)
    )
    admin = (await session.exec(query)).first()
    if admin is None:
        raise ImportOwnerNotFound(
            "there is no admin to own the jar: pass --owner EMAIL or create an admin first"
        )
    return admin


async def jar_for_import(
    session: AsyncSession, name: str, owner_email: str | None
) -> tuple[HoneyJar, User, bool]:
    """The jar called ``name`` (that owner's, when one is given), created when there is none.

    Returns the jar, the user the import acts as (the jar's owner) and whether it was created.
    """
    data = JarCreate(name=name)
    query = select(HoneyJar).where(HoneyJar.name == data.name)
    if owner_email is not None:
        owner = await import_owner(session, owner_email)
        query = query.where(HoneyJar.owner_id == owner.id)
    jars = list(await session.exec(query.order_by(col(HoneyJar.created_at))))
    if len(jars) > 1:
        raise AmbiguousJarName(
            f"{len(jars)} honey jars are named {data.name!r}; pass --owner EMAIL to pick one"
        )
    if jars:
        jar_owner = await session.get(User, jars[0].owner_id)
        assert jar_owner is not None  # owner_id is a non-null foreign key
        return jars[0], jar_owner, False
    owner = await import_owner(session, owner_email)
    return await create_jar(session, owner, data), owner, True


async def import_document(
    session: AsyncSession, actor: User, jar_id: uuid.UUID, data: DocumentCreate
) -> ImportOutcome:
    """Add a file's document, replace the one from the same file if it changed, or skip it.

    Matched by file name, else by identical title and content, so importing again is a no-op.
    """
    jar = await get_jar(session, actor, jar_id, write=True)
    in_jar = select(Document).where(Document.jar_id == jar.id)
    existing = (
        await session.exec(
            in_jar.where(Document.filename == data.filename)
            .order_by(col(Document.created_at), col(Document.id))
            .limit(1)
        )
    ).first() or (
        await session.exec(
            in_jar.where(Document.title == data.title, Document.content == data.content).limit(1)
        )
    ).first()
    if existing is None:
        await add_document(session, actor, jar.id, data)
        return "added"
    if (existing.title, existing.content, existing.content_type) == (
        data.title,
        data.content,
        data.content_type,
    ):
        return "unchanged"
    change = DocumentUpdate(title=data.title, content=data.content, content_type=data.content_type)
    await update_document(session, actor, jar.id, existing.id, change)
    return "updated"
