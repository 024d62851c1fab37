from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from nectar.pagination import Pagination

ContentType = Literal["text/markdown", "text/plain", "text/html"]
MAX_DOCUMENT_CHARS = 500_000

JarName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]


def _has_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain text, not only whitespace")
    return value


Content = Annotated[
    str, Field(min_length=1, max_length=MAX_DOCUMENT_CHARS), AfterValidator(_has_text)
]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JarCreate(_Input):
    name: JarName
    description: Annotated[str, Field(max_length=2000)] = ""


class JarUpdate(_Input):
    name: JarName | None = None
    description: Annotated[str, Field(max_length=2000)] | None = None


class JarPublic(BaseModel):
    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    description: str
    document_count: int
    created_at: datetime
    updated_at: datetime


class JarEnvelope(BaseModel):
    message: str | None = None
    honey_jar: JarPublic


class JarList(BaseModel):
    honey_jars: list[JarPublic]
    pagination: Pagination


class DocumentCreate(_Input):
    title: Title
    content: Content
    content_type: ContentType = "text/markdown"
    filename: str | None = Field(default=None, max_length=255)


class DocumentUpdate(_Input):
    title: Title | None = None
    content: Content | None = None
    content_type: ContentType | None = None


class DocumentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    jar_id: uuid.UUID
    title: str
    content_type: str
    filename: str | None
    size_bytes: int
    chunks: int = Field(validation_alias="chunk_count")
    created_at: datetime
    updated_at: datetime


class DocumentDetail(DocumentPublic):
    content: str


class DocumentEnvelope(BaseModel):
    message: str | None = None
    document: DocumentPublic | DocumentDetail


class DocumentList(BaseModel):
    documents: list[DocumentPublic]
    pagination: Pagination


class SearchResult(BaseModel):
    rank: int
    document_id: uuid.UUID
    title: str
    heading: str
    snippet: str
    score: float


class SearchResponse(BaseModel):
    query: str
    results: list[SearchResult]
