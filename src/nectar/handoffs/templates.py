"""Quick responses for agents: stored text with placeholders filled in at reply time."""

from __future__ import annotations

import string
import uuid

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nectar.db import utcnow
from nectar.errors import BadRequest, Conflict, Forbidden
from nectar.handoffs.exceptions import TemplateNotFound
from nectar.handoffs.models import ResponseTemplate
from nectar.handoffs.schemas import TemplateCreate, TemplateUpdate
from nectar.pagination import PageParams, Pagination
from nectar.users.models import Role, User

# Filled from the handoff; anything else must come in the reply's ``variables``.
BUILTIN_PLACEHOLDERS = ("user_name", "user_email", "bot_name", "agent_name")


def placeholders(body: str) -> list[str]:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(body) if name is not None]
    except ValueError as exc:
        raise BadRequest(f"body: {exc} (write {{{{ and }}}} for literal braces)") from None
    for name in names:
        if not name.isidentifier():
            raise BadRequest(
                f"body: placeholder {{{name}}} must be a plain name like {{user_name}}"
            )
    return list(dict.fromkeys(names))


def render(body: str, values: dict[str, str]) -> str:
    missing = [name for name in placeholders(body) if name not in values]
    if missing:
        raise BadRequest(
            f"no value for {', '.join('{' + m + '}' for m in missing)}; pass it in variables"
        )
    return body.format_map(values)


def _check_role(actor: User) -> None:
    if actor.role not in (Role.admin.value, Role.agent.value):
        raise Forbidden("only agents and admins manage response templates")


async def _save(session: AsyncSession, template: ResponseTemplate) -> ResponseTemplate:
    session.add(template)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict(f"a template named {template.name!r} exists already") from None
    return template


async def create(session: AsyncSession, actor: User, data: TemplateCreate) -> ResponseTemplate:
    _check_role(actor)
    placeholders(data.body)
    return await _save(
        session, ResponseTemplate(name=data.name, body=data.body, created_by_id=actor.id)
    )


async def get(session: AsyncSession, actor: User, template_id: uuid.UUID) -> ResponseTemplate:
    _check_role(actor)
    template = await session.get(ResponseTemplate, template_id)
    if template is None:
        raise TemplateNotFound()
    return template


async def list_templates(
    session: AsyncSession, actor: User, page: PageParams
) -> tuple[list[ResponseTemplate], Pagination]:
    _check_role(actor)
    total = (await session.exec(select(func.count()).select_from(ResponseTemplate))).one()
    rows = await session.exec(
        select(ResponseTemplate)
        .order_by(col(ResponseTemplate.name))
        .offset(page.offset)
        .limit(page.per_page)
    )
    return list(rows), page.result(total)


async def update(
    session: AsyncSession, actor: User, template_id: uuid.UUID, data: TemplateUpdate
) -> ResponseTemplate:
    template = await get(session, actor, template_id)
    if data.body is not None:
        placeholders(data.body)
        template.body = data.body
    if data.name is not None:
        template.name = data.name
    template.updated_at = utcnow()
    return await _save(session, template)


async def delete(session: AsyncSession, actor: User, template_id: uuid.UUID) -> None:
    template = await get(session, actor, template_id)
    await session.delete(template)
    await session.flush()
