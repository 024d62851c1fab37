from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from nectar.deps import SessionDep
from nectar.errors import responses
from nectar.knowledge import service
from nectar.knowledge.schemas import (
    DocumentCreate,
    DocumentDetail,
    DocumentEnvelope,
    DocumentList,
    DocumentPublic,
    DocumentUpdate,
    JarCreate,
    JarEnvelope,
    JarList,
    JarPublic,
    JarUpdate,
    SearchResponse,
    SearchResult,
)
from nectar.knowledge.uploads import OPENAPI_BODY, read_document
from nectar.pagination import PageDep
from nectar.users.dependencies import CurrentUser

router = APIRouter(prefix="/api/honey-jars", tags=["honey jars"])
_ERRORS = responses(401, 403, 404, 422)


def _jar(jar: object, count: int) -> JarPublic:
    return JarPublic.model_validate({**vars(jar), "document_count": count})


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JarEnvelope, responses=_ERRORS)
async def create_jar(data: JarCreate, user: CurrentUser, session: SessionDep) -> JarEnvelope:
    jar = await service.create_jar(session, user, data)
    return JarEnvelope(message="Honey jar created", honey_jar=_jar(jar, 0))


@router.get("", response_model=JarList, responses=_ERRORS)
async def list_jars(
    user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    search: Annotated[str | None, Query(max_length=100)] = None,
) -> JarList:
    jars, pagination = await service.list_jars(session, user, page, search)
    counts = await service.document_counts(session, [j.id for j in jars])
    return JarList(honey_jars=[_jar(j, counts.get(j.id, 0)) for j in jars], pagination=pagination)


@router.get("/{jar_id}", response_model=JarEnvelope, responses=_ERRORS)
async def get_jar(jar_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> JarEnvelope:
    jar = await service.get_jar(session, user, jar_id)
    counts = await service.document_counts(session, [jar.id])
    return JarEnvelope(honey_jar=_jar(jar, counts.get(jar.id, 0)))


@router.put("/{jar_id}", response_model=JarEnvelope, responses=_ERRORS)
async def update_jar(
    jar_id: uuid.UUID, data: JarUpdate, user: CurrentUser, session: SessionDep
) -> JarEnvelope:
    jar = await service.update_jar(session, user, jar_id, data)
    counts = await service.document_counts(session, [jar.id])
    return JarEnvelope(message="Honey jar updated", honey_jar=_jar(jar, counts.get(jar.id, 0)))


@router.delete("/{jar_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS)
async def delete_jar(jar_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Response:
    """Delete the jar with its documents; bots stop answering from it."""
    await service.delete_jar(session, user, jar_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{jar_id}/documents",
    status_code=status.HTTP_201_CREATED,
    response_model=DocumentEnvelope,
    responses=responses(401, 403, 404, 413, 415, 422),
    openapi_extra=OPENAPI_BODY,
)
async def add_document(
    jar_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    data: Annotated[DocumentCreate, Depends(read_document)],
) -> DocumentEnvelope:
    """Add a document as JSON `{"title", "content"}` or upload a .md, .txt or .html file."""
    doc = await service.add_document(session, user, jar_id, data)
    return DocumentEnvelope(message="Document added", document=DocumentPublic.model_validate(doc))


@router.get("/{jar_id}/documents", response_model=DocumentList, responses=_ERRORS)
async def list_documents(
    jar_id: uuid.UUID, user: CurrentUser, session: SessionDep, page: PageDep
) -> DocumentList:
    docs, pagination = await service.list_documents(session, user, jar_id, page)
    return DocumentList(
        documents=[DocumentPublic.model_validate(d) for d in docs], pagination=pagination
    )


@router.get("/{jar_id}/documents/{doc_id}", response_model=DocumentEnvelope, responses=_ERRORS)
async def get_document(
    jar_id: uuid.UUID, doc_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> DocumentEnvelope:
    doc = await service.get_document(session, user, jar_id, doc_id)
    return DocumentEnvelope(document=DocumentDetail.model_validate(doc))


@router.put("/{jar_id}/documents/{doc_id}", response_model=DocumentEnvelope, responses=_ERRORS)
async def update_document(
    jar_id: uuid.UUID,
    doc_id: uuid.UUID,
    data: DocumentUpdate,
    user: CurrentUser,
    session: SessionDep,
) -> DocumentEnvelope:
    doc = await service.update_document(session, user, jar_id, doc_id, data)
    return DocumentEnvelope(message="Document updated", document=DocumentDetail.model_validate(doc))


@router.delete(
    "/{jar_id}/documents/{doc_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS
)
async def delete_document(
    jar_id: uuid.UUID, doc_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> Response:
    await service.delete_document(session, user, jar_id, doc_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{jar_id}/search", response_model=SearchResponse, responses=_ERRORS)
async def search(
    jar_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    q: Annotated[str, Query(min_length=1, max_length=500, description="words or a question")],
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> SearchResponse:
    """Full-text search: passages ranked by how many (and how rare) of the words they share."""
    hits = await service.search_jar(session, user, jar_id, q, limit)
    return SearchResponse(
        query=q,
        results=[
            SearchResult(
                rank=i,
                document_id=h.document_id,
                title=h.title,
                heading=h.heading,
                snippet=h.body[:300],
                score=round(h.score, 6),
            )
            for i, h in enumerate(hits, 1)
        ],
    )
