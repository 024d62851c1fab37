from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from sse_starlette.sse import EventSourceResponse

from nectar.chat import stream
from nectar.deps import ServicesDep, SessionDep
from nectar.errors import responses
from nectar.handoffs import bot_settings, service, templates
from nectar.handoffs.detection.base import Reason, Urgency
from nectar.handoffs.schemas import (
    AssignRequest,
    BotHandoffEnvelope,
    BotHandoffSettings,
    BotHandoffUpdate,
    CancelRequest,
    ConversationMessage,
    ConversationMessages,
    EscalateRequest,
    EventOut,
    HandoffDetail,
    HandoffEnvelope,
    HandoffList,
    HandoffOut,
    ReplyRequest,
    ReplyResponse,
    ResolveRequest,
    TemplateCreate,
    TemplateEnvelope,
    TemplateList,
    TemplateOut,
    TemplateUpdate,
)
from nectar.pagination import PageDep
from nectar.users.dependencies import BotManager, CurrentUser, StreamUser

router = APIRouter(prefix="/api/nectar-bots", tags=["handoffs"])


def _effects(services: ServicesDep) -> service.Effects:
    return service.Effects(
        config=services.settings.nectar_bots, bus=services.events, enqueue=services.queue.enqueue
    )


EffectsDep = Annotated[service.Effects, Depends(_effects)]
_ERRORS = responses(401, 403, 404, 409, 422)


@router.get("/handoffs", response_model=HandoffList, responses=_ERRORS)
async def list_handoffs(
    user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    status: Annotated[
        str | None,
        Query(
            description="active (not resolved or cancelled), pending, assigned, "
            "in_progress, resolved or cancelled"
        ),
    ] = None,
    urgency: Urgency | None = None,
    bot_id: uuid.UUID | None = None,
    assignee_id: Annotated[str | None, Query(description="a user id, or `me`")] = None,
    reason: Reason | None = None,
) -> HandoffList:
    """The queue, most urgent first, then newest."""
    assignee = service.parse_assignee(assignee_id, user)
    rows, pagination = await service.list_handoffs(
        session,
        user,
        page,
        status=service.parse_status_filter(status),
        urgency=urgency.value if urgency else None,
        bot_id=bot_id,
        assignee_id=assignee,
        reason=reason.value if reason else None,
    )
    return HandoffList(handoffs=[HandoffOut.model_validate(h) for h in rows], pagination=pagination)


@router.get("/handoffs/{handoff_id}", response_model=HandoffDetail, responses=_ERRORS)
async def get_handoff(
    handoff_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> HandoffDetail:
    """The handoff with its context, its history of events and the conversation so far."""
    handoff, history, messages = await service.detail(session, user, handoff_id)
    return HandoffDetail(
        **HandoffOut.model_validate(handoff).model_dump(),
        context=handoff.context,
        events=[EventOut.model_validate(e) for e in history],
        messages=[ConversationMessage.model_validate(m) for m in messages],
    )


@router.post("/handoffs/{handoff_id}/assign", response_model=HandoffEnvelope, responses=_ERRORS)
async def assign(
    handoff_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    fx: EffectsDep,
    data: AssignRequest | None = None,
) -> HandoffEnvelope:
    """Accept the handoff yourself, or delegate it with `agent_id`."""
    handoff = await service.assign(session, fx, user, handoff_id, data.agent_id if data else None)
    return HandoffEnvelope(
        message=f"Handoff {handoff.status}", handoff=HandoffOut.model_validate(handoff)
    )


@router.post("/handoffs/{handoff_id}/messages", response_model=ReplyResponse, responses=_ERRORS)
async def reply(
    handoff_id: uuid.UUID,
    data: ReplyRequest,
    user: CurrentUser,
    session: SessionDep,
    fx: EffectsDep,
) -> ReplyResponse:
    """Reply to the user in their conversation (text, or a response template)."""
    handoff, message = await service.reply_with(session, fx, user, handoff_id, data)
    return ReplyResponse(
        message="Reply sent",
        handoff=HandoffOut.model_validate(handoff),
        sent=ConversationMessage.model_validate(message),
    )


@router.get(
    "/handoffs/{handoff_id}/messages", response_model=ConversationMessages, responses=_ERRORS
)
async def conversation(
    handoff_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    after_seq: Annotated[int, Query(ge=0, description="only messages after this seq")] = 0,
) -> ConversationMessages:
    """The user's conversation, for polling new messages while you handle it."""
    handoff = await service.get_handoff(session, user, handoff_id)
    messages = await service.conversation_messages(session, handoff.conversation_id, after_seq)
    return ConversationMessages(
        conversation_id=handoff.conversation_id,
        messages=[ConversationMessage.model_validate(m) for m in messages],
    )


@router.post("/handoffs/{handoff_id}/resolve", response_model=HandoffEnvelope, responses=_ERRORS)
async def resolve(
    handoff_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    fx: EffectsDep,
    data: ResolveRequest | None = None,
) -> HandoffEnvelope:
    """Close it with notes; the conversation returns to the bot unless `return_to_bot` is false."""
    data = data or ResolveRequest()
    handoff = await service.resolve(
        session, fx, user, handoff_id, data.resolution_notes, data.return_to_bot
    )
    return HandoffEnvelope(message="Handoff resolved", handoff=HandoffOut.model_validate(handoff))


@router.post("/handoffs/{handoff_id}/cancel", response_model=HandoffEnvelope, responses=_ERRORS)
async def cancel(
    handoff_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    fx: EffectsDep,
    data: CancelRequest | None = None,
) -> HandoffEnvelope:
    """Close it unhandled; the conversation goes back to the bot."""
    handoff = await service.cancel(session, fx, user, handoff_id, data.reason if data else None)
    return HandoffEnvelope(message="Handoff cancelled", handoff=HandoffOut.model_validate(handoff))


@router.post(
    "/conversations/{conversation_id}/handoff",
    status_code=status.HTTP_201_CREATED,
    response_model=HandoffEnvelope,
    responses=_ERRORS,
)
async def escalate(
    conversation_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    fx: EffectsDep,
    data: EscalateRequest | None = None,
) -> HandoffEnvelope:
    """Hand a conversation to humans by hand (reason `admin_override`)."""
    data = data or EscalateRequest()
    handoff = await service.escalate_conversation(
        session, fx, user, conversation_id, data.urgency, data.note
    )
    return HandoffEnvelope(message="Handoff opened", handoff=HandoffOut.model_validate(handoff))


@router.get("/{bot_id}/handoff", response_model=BotHandoffSettings, responses=_ERRORS)
async def get_bot_handoff(
    bot_id: uuid.UUID, user: BotManager, session: SessionDep, services: ServicesDep
) -> BotHandoffSettings:
    """The bot's effective handoff settings (config defaults with the bot's overrides)."""
    bot = await service.bot_for_settings(session, user, bot_id)
    return bot_settings.describe(bot, services.settings.nectar_bots)


@router.post("/{bot_id}/handoff", response_model=BotHandoffEnvelope, responses=_ERRORS)
async def configure_bot_handoff(
    bot_id: uuid.UUID,
    data: BotHandoffUpdate,
    user: BotManager,
    session: SessionDep,
    services: ServicesDep,
) -> BotHandoffEnvelope:
    """Configure the bot's triggers and notifications; fields left out keep their values."""
    bot = await bot_settings.update(session, user, bot_id, data, services.bots.changed)
    return BotHandoffEnvelope(
        message="Handoff settings updated",
        handoff=bot_settings.describe(bot, services.settings.nectar_bots),
    )


# --- response templates ---------------------------------------------------------------------

_T = "/response-templates"


def _template(t: object) -> TemplateOut:
    out = TemplateOut.model_validate(t)
    out.placeholders = templates.placeholders(out.body)
    return out


@router.get(_T, response_model=TemplateList, responses=_ERRORS, tags=["response templates"])
async def list_templates(user: CurrentUser, session: SessionDep, page: PageDep) -> TemplateList:
    rows, pagination = await templates.list_templates(session, user, page)
    return TemplateList(templates=[_template(t) for t in rows], pagination=pagination)


@router.post(
    _T,
    status_code=status.HTTP_201_CREATED,
    response_model=TemplateEnvelope,
    responses=_ERRORS,
    tags=["response templates"],
)
async def create_template(
    data: TemplateCreate, user: CurrentUser, session: SessionDep
) -> TemplateEnvelope:
    """Placeholders: {user_name}, {user_email}, {bot_name}, {agent_name}, or your own, filled
    from the reply's `variables`."""
    return TemplateEnvelope(
        message="Template created", template=_template(await templates.create(session, user, data))
    )


@router.get(
    _T + "/{template_id}",
    response_model=TemplateEnvelope,
    responses=_ERRORS,
    tags=["response templates"],
)
async def get_template(
    template_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> TemplateEnvelope:
    return TemplateEnvelope(template=_template(await templates.get(session, user, template_id)))


@router.put(
    _T + "/{template_id}",
    response_model=TemplateEnvelope,
    responses=_ERRORS,
    tags=["response templates"],
)
async def update_template(
    template_id: uuid.UUID, data: TemplateUpdate, user: CurrentUser, session: SessionDep
) -> TemplateEnvelope:
    template = await templates.update(session, user, template_id, data)
    return TemplateEnvelope(message="Template updated", template=_template(template))


@router.delete(
    _T + "/{template_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_ERRORS,
    tags=["response templates"],
)
async def delete_template(
    template_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> Response:
    await templates.delete(session, user, template_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/handoffs/{handoff_id}/stream",
    responses={
        **_ERRORS,
        200: {
            "description": "text/event-stream of the conversation's messages",
            "content": {"text/event-stream": {}},
        },
    },
    response_class=EventSourceResponse,
)
async def follow(
    handoff_id: uuid.UUID,
    user: StreamUser,
    session: SessionDep,
    services: ServicesDep,
    after_seq: Annotated[int, Query(ge=0)] = 0,
) -> EventSourceResponse:
    """Live: the user's conversation, message by message, while you handle it. Browsers'
    EventSource cannot send headers, so the token may also come as `?access_token=`."""
    handoff = await service.get_handoff(session, user, handoff_id)
    return EventSourceResponse(stream.follow(services, handoff.conversation_id, after_seq), ping=15)
