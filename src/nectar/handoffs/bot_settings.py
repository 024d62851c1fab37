"""A bot's handoff configuration: the config file's defaults overridden per bot."""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from nectar.bots import service as bots
from nectar.bots.models import NectarBot
from nectar.config import NectarBotsConfig
from nectar.db import utcnow
from nectar.errors import BadRequest
from nectar.handoffs.detection.base import TriggerSettings
from nectar.handoffs.schemas import BotHandoffSettings, BotHandoffUpdate
from nectar.users.models import User

_METHODS = {"in_app", "email", "slack", "teams", "pagerduty", "zendesk", "servicenow", "webhook"}


def effective(
    config: NectarBotsConfig,
    *,
    handoff_enabled: bool,
    keywords: list[str] | tuple[str, ...],
    confidence_threshold: float,
    max_conversation_length: int,
    settings: dict[str, Any],
) -> TriggerSettings:
    triggers = config.handoff.triggers
    return TriggerSettings(
        enabled=config.handoff.enabled and handoff_enabled,
        confidence_threshold=confidence_threshold,
        keywords=tuple(keywords),
        max_conversation_length=max_conversation_length,
        max_conversation_minutes=int(
            settings.get("max_conversation_minutes", triggers.max_conversation_minutes)
        ),
        disabled=frozenset(settings.get("disabled", ())),
    )


def describe(bot: NectarBot, config: NectarBotsConfig) -> BotHandoffSettings:
    s = effective(
        config,
        handoff_enabled=bot.handoff_enabled,
        keywords=bot.handoff_keywords,
        confidence_threshold=bot.handoff_confidence_threshold,
        max_conversation_length=bot.max_conversation_length,
        settings=bot.handoff_settings,
    )
    notifications = config.handoff.notifications
    return BotHandoffSettings(
        bot_id=bot.id,
        enabled=bot.handoff_enabled,
        triggers={
            "confidence_threshold": s.confidence_threshold,
            "keywords": list(s.keywords),
            "max_conversation_length": s.max_conversation_length,
            "max_conversation_minutes": s.max_conversation_minutes,
            "disabled": sorted(s.disabled),
        },
        notification_settings={
            "methods": bot.handoff_settings.get("methods", list(notifications.notification_types)),
            "urgency": bot.handoff_settings.get("urgency"),
        },
    )


async def update(
    session: AsyncSession,
    actor: User,
    bot_id: uuid.UUID,
    data: BotHandoffUpdate,
    on_change: bots.OnChange | None,
) -> NectarBot:
    bot = await bots.get_bot(session, actor, bot_id)
    extra = dict(bot.handoff_settings)
    if data.enabled is not None:
        bot.handoff_enabled = data.enabled
    if data.triggers is not None:
        t = data.triggers
        if t.confidence_threshold is not None:
            bot.handoff_confidence_threshold = t.confidence_threshold
        if t.keywords is not None:
            bot.handoff_keywords = list(dict.fromkeys(t.keywords))
        if t.max_conversation_length is not None:
            bot.max_conversation_length = t.max_conversation_length
        if t.max_conversation_minutes is not None:
            extra["max_conversation_minutes"] = t.max_conversation_minutes
        if t.disabled is not None:
            extra["disabled"] = sorted({r.value for r in t.disabled})
    if data.notification_settings is not None:
        n = data.notification_settings
        if n.methods is not None:
            unknown = sorted(set(n.methods) - _METHODS)
            if unknown:
                raise BadRequest(f"unknown notification method {', '.join(unknown)}")
            extra["methods"] = list(dict.fromkeys(n.methods))
        if n.urgency is not None:
            extra["urgency"] = n.urgency.value
    bot.handoff_settings = extra
    bot.updated_at = utcnow()
    session.add(bot)
    await session.flush()
    if on_change is not None:
        from nectar.db import after_commit

        callback = on_change
        after_commit(session, lambda: callback(bot.id))
    return bot
