"""Nectar Bots: configuration and API keys. Members manage their own bots, admins all."""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nectar import security
from nectar.bots.exceptions import BotNotFound, SlugTaken
from nectar.bots.models import BotStatus, NectarBot
from nectar.bots.schemas import BotCreate, BotUpdate
from nectar.config import NectarBotsConfig
from nectar.db import after_commit, utcnow
from nectar.errors import BadRequest
from nectar.knowledge import service as knowledge
from nectar.pagination import PageParams, Pagination
from nectar.users.models import Role, User


def _defaults(config: NectarBotsConfig) -> dict[str, object]:
    triggers = config.handoff.triggers
    return {
        "description": "",
        "system_prompt": "",
        "max_conversation_length": triggers.max_conversation_length,
        "confidence_threshold": config.defaults.confidence_threshold,
        "rate_limit_per_hour": config.defaults.rate_limit_per_hour,
        "rate_limit_per_day": config.defaults.rate_limit_per_day,
        "is_public": False,
        "handoff_enabled": config.handoff.enabled,
        "handoff_keywords": list(triggers.keywords),
        "handoff_confidence_threshold": triggers.confidence_threshold,
        "status": BotStatus.active.value,
    }


def slugify(name: str) -> str:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:50].strip("-")
    return slug if len(slug) >= 3 else f"bot-{slug}".strip("-")


async def _free_slug(session: AsyncSession, base: str) -> str:
    taken = set(
        await session.exec(
            select(NectarBot.slug).where(
                sa.or_(col(NectarBot.slug) == base, col(NectarBot.slug).like(f"{base}-%"))
            )
        )
    )
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _column_values(values: dict[str, object]) -> dict[str, object]:
    if values.get("status") is not None:
        values["status"] = str(values["status"])
    return values


def _check_limits(bot: NectarBot) -> None:
    if bot.rate_limit_per_day < bot.rate_limit_per_hour:
        raise BadRequest("rate_limit_per_day must be at least rate_limit_per_hour")


_SLUG_ATTEMPTS = 5


async def _save(session: AsyncSession, bot: NectarBot, changes: dict[str, object]) -> None:
    """Apply ``changes`` to the bot and flush it inside a savepoint.

    A public bot without a slug gets one derived from its name; a concurrent request may take
    that slug first, and then the next free one is tried. A slug the caller chose that is taken
    is a 409. The changes are made inside the savepoint, not before it: ``begin_nested`` flushes
    pending changes before it starts, and a failure there would doom the whole transaction.
    """
    for attempt in range(_SLUG_ATTEMPTS):
        try:
            async with session.begin_nested():
                for field, value in changes.items():
                    setattr(bot, field, value)
                slug, derived = bot.slug, bot.is_public and not bot.slug
                if derived:
                    slug = bot.slug = await _free_slug(session, slugify(bot.name))
                _check_limits(bot)
                session.add(bot)
                await session.flush()
            return
        except IntegrityError:
            if not derived or attempt == _SLUG_ATTEMPTS - 1:
                raise SlugTaken(slug or "") from None
            if sa.inspect(bot).persistent:
                await session.refresh(bot)  # the rollback expired the changed attributes


async def create_bot(
    session: AsyncSession, owner: User, data: BotCreate, config: NectarBotsConfig
) -> tuple[NectarBot, str]:
    """Create a bot; returns it with its API key, which is not stored and not shown again."""
    values = _defaults(config)
    values.update(_column_values(data.model_dump(exclude_none=True, exclude={"honey_jar_ids"})))
    jar_ids = data.honey_jar_ids or []
    await knowledge.check_linkable(session, owner, jar_ids)
    key = security.new_api_key()
    slug = values.pop("slug", None)
    bot = NectarBot(
        owner_id=owner.id,
        api_key_hash=security.hash_secret(key),
        api_key_hint=security.secret_hint(key),
        **values,  # type: ignore[arg-type]
    )
    await _save(session, bot, {"slug": slug})
    await knowledge.set_bot_jars(session, bot.id, jar_ids)
    return bot, key


async def jar_ids(
    session: AsyncSession, bot_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    return await knowledge.jars_of_bots(session, bot_ids)


async def get_bot(session: AsyncSession, actor: User, bot_id: uuid.UUID) -> NectarBot:
    """A bot the actor may manage; another member's bot is reported as not found."""
    bot = await session.get(NectarBot, bot_id)
    if bot is None or (actor.role != Role.admin.value and bot.owner_id != actor.id):
        raise BotNotFound()
    return bot


async def list_bots(
    session: AsyncSession,
    actor: User,
    page: PageParams,
    status: BotStatus | None,
    search: str | None,
) -> tuple[list[NectarBot], Pagination]:
    query = select(NectarBot)
    if actor.role != Role.admin.value:
        query = query.where(NectarBot.owner_id == actor.id)
    if status is not None:
        query = query.where(NectarBot.status == status.value)
    if search:
        escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(func.lower(NectarBot.name).like(f"%{escaped}%", escape="\\"))
    total = (await session.exec(select(func.count()).select_from(query.subquery()))).one()
    rows = await session.exec(
        query.order_by(col(NectarBot.created_at).desc(), col(NectarBot.id))
        .offset(page.offset)
        .limit(page.per_page)
    )
    return list(rows), page.result(total)


OnChange = Callable[[uuid.UUID], Awaitable[None]]


def _announce(session: AsyncSession, bot_id: uuid.UUID, on_change: OnChange | None) -> None:
    """After commit, let cached copies of the bot (API key lookups) go."""
    if on_change is not None:
        callback = on_change
        after_commit(session, lambda: callback(bot_id))


async def update_bot(
    session: AsyncSession,
    actor: User,
    bot_id: uuid.UUID,
    data: BotUpdate,
    on_change: OnChange | None = None,
) -> NectarBot:
    bot = await get_bot(session, actor, bot_id)
    _announce(session, bot.id, on_change)
    if data.honey_jar_ids is not None:
        await knowledge.check_linkable(session, actor, data.honey_jar_ids)
        await knowledge.set_bot_jars(session, bot.id, data.honey_jar_ids)
    changes = _column_values(data.model_dump(exclude_unset=True, exclude={"honey_jar_ids"}))
    for field, value in changes.items():
        if value is None and field not in ("slug",):
            raise BadRequest(f"{field} cannot be null")
    await _save(session, bot, {**changes, "updated_at": utcnow()})
    return bot


async def delete_bot(
    session: AsyncSession, actor: User, bot_id: uuid.UUID, on_change: OnChange | None = None
) -> NectarBot:
    bot = await get_bot(session, actor, bot_id)
    _announce(session, bot.id, on_change)
    await session.delete(bot)
    await session.flush()
    return bot


async def regenerate_api_key(
    session: AsyncSession, actor: User, bot_id: uuid.UUID, on_change: OnChange | None = None
) -> tuple[NectarBot, str]:
    """Issue a new key; the old one stops working with this commit."""
    bot = await get_bot(session, actor, bot_id)
    _announce(session, bot.id, on_change)
    key = security.new_api_key()
    bot.api_key_hash = security.hash_secret(key)
    bot.api_key_hint = security.secret_hint(key)
    bot.api_key_created_at = bot.updated_at = utcnow()
    session.add(bot)
    await session.flush()
    return bot, key
