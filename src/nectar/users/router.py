from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from nectar.deps import ClientIPDep, ServicesDep, SessionDep
from nectar.errors import responses
from nectar.pagination import PageDep
from nectar.users import service
from nectar.users.dependencies import AdminUser, Authenticated, CurrentUser
from nectar.users.models import Role
from nectar.users.schemas import (
    Token,
    UserCreate,
    UserEnvelope,
    UserList,
    UserPublic,
    UserUpdate,
)

auth_router = APIRouter(prefix="/api/auth", tags=["auth"])
users_router = APIRouter(prefix="/api/users", tags=["users"])

_ERRORS = responses(401, 403, 404, 409, 422)


@auth_router.post(
    "/token",
    response_model=Token,
    responses={
        401: {"description": "wrong email or password"},
        429: {"description": "too many failures"},
    },
)
async def sign_in(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    services: ServicesDep,
    ip: ClientIPDep,
) -> Token:
    """Exchange email (``username``) and password for a bearer access token."""
    token, ttl = await service.authenticate(
        session, services.limiter, services.settings, form.username, form.password, ip
    )
    return Token(access_token=token, expires_in=ttl)


@auth_router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS)
async def sign_out(auth: Authenticated, session: SessionDep) -> Response:
    """Revoke the access token used for this call."""
    await service.revoke_token(session, auth[1])
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@auth_router.get("/me", response_model=UserPublic, responses=_ERRORS)
async def me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)


@users_router.get("", response_model=UserList, responses=_ERRORS)
async def list_users(
    _admin: AdminUser,
    session: SessionDep,
    page: PageDep,
    role: Role | None = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
) -> UserList:
    users, pagination = await service.list_users(session, page, role, search)
    return UserList(users=[UserPublic.model_validate(u) for u in users], pagination=pagination)


@users_router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=UserEnvelope, responses=_ERRORS
)
async def create_user(data: UserCreate, _admin: AdminUser, session: SessionDep) -> UserEnvelope:
    user = await service.create_user(session, data)
    return UserEnvelope(message="User created", user=UserPublic.model_validate(user))


@users_router.get("/{user_id}", response_model=UserPublic, responses=_ERRORS)
async def get_user(user_id: uuid.UUID, actor: CurrentUser, session: SessionDep) -> UserPublic:
    """Admins may read anyone; other users only themselves."""
    return UserPublic.model_validate(await service.read_user(session, actor, user_id))


@users_router.patch("/{user_id}", response_model=UserEnvelope, responses=_ERRORS)
async def update_user(
    user_id: uuid.UUID, data: UserUpdate, actor: CurrentUser, session: SessionDep
) -> UserEnvelope:
    user = await service.update_user(session, actor, user_id, data)
    return UserEnvelope(message="User updated", user=UserPublic.model_validate(user))


@users_router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS)
async def delete_user(user_id: uuid.UUID, _admin: AdminUser, session: SessionDep) -> Response:
    await service.delete_user(session, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
