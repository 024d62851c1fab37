"""Reading a document from a JSON body or a multipart file upload (.md, .txt, .html)."""

from __future__ import annotations

import html
import json
import re
from pathlib import PurePath
from typing import Any

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from nectar.errors import BadRequest, NectarError
from nectar.knowledge.exceptions import UnsupportedDocument
from nectar.knowledge.schemas import MAX_DOCUMENT_CHARS, ContentType, DocumentCreate

EXTENSIONS: dict[str, ContentType] = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".text": "text/plain",
    ".html": "text/html",
    ".htm": "text/html",
}

OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/DocumentCreate"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": ".md, .markdown, .txt or .html, UTF-8",
                        },
                        "title": {
                            "type": "string",
                            "description": "default: the first heading, else the file name",
                        },
                    },
                }
            },
        },
    }
}


class ValidationFailed(NectarError):
    code = "validation_error"
    status = 422


def _validation(exc: ValidationError) -> ValidationFailed:
    parts = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()]
    return ValidationFailed("; ".join(parts))


def title_from(text: str, filename: str) -> str:
    """The first heading (Markdown, else HTML <title> or <h1>-<h6>), else the file name."""
    for line in text.splitlines()[:20]:
        match = re.match(r"^#{1,6}\s+(.+?)(?:\s+#+)?$", line.strip())
        if match:
            return re.sub(r"[*_`]+", "", match.group(1)).strip()[:300]
    for tag in (r"title", r"h[1-6]"):
        match = re.search(rf"<({tag})\b[^>]*>(.*?)</\1\s*>", text[:20_000], re.I | re.S)
        # Tags inside the heading go; entities (&amp;) become their characters.
        name = html.unescape(re.sub(r"<[^>]*>", "", match.group(2))) if match else ""
        if name.strip():
            return re.sub(r"\s+", " ", name).strip()[:300]
    return PurePath(filename).stem.replace("-", " ").replace("_", " ").strip()[:300] or "Untitled"


def document_from_file(filename: str, raw: bytes, title: str | None) -> DocumentCreate:
    suffix = PurePath(filename).suffix.lower()
    content_type = EXTENSIONS.get(suffix)
    if content_type is None:
        raise UnsupportedDocument(
            f"{filename!r}: only {', '.join(sorted(EXTENSIONS))} files can be added"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnsupportedDocument(f"{filename!r} is not UTF-8 text") from None
    if "\x00" in text:
        raise UnsupportedDocument(f"{filename!r} looks binary")
    if not text.strip():
        raise ValidationFailed(f"file: {filename!r} has no text")
    if len(text) > MAX_DOCUMENT_CHARS:
        raise ValidationFailed(f"file: longer than {MAX_DOCUMENT_CHARS} characters")
    try:
        return DocumentCreate(
            title=title or title_from(text, filename),
            content=text,
            content_type=content_type,
            filename=PurePath(filename).name[:255],
        )
    except ValidationError as exc:
        raise _validation(exc) from None


async def read_document(request: Request) -> DocumentCreate:
    """The dependency behind POST .../documents: JSON or multipart, validated the same way."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=5)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadRequest("multipart upload needs a 'file' field")
        title = form.get("title")
        raw = await upload.read()
        return document_from_file(
            upload.filename or "upload.txt", raw, title if isinstance(title, str) else None
        )
    if content_type not in ("application/json", ""):
        raise UnsupportedDocument("send application/json or multipart/form-data")
    try:
        payload = json.loads(await request.body())
    except ValueError:
        raise ValidationFailed("request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ValidationFailed("body: expected a JSON object")
    try:
        return DocumentCreate.model_validate(payload)
    except ValidationError as exc:
        raise _validation(exc) from None
