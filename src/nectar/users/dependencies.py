"""Who is calling: bearer-token authentication and role checks."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer

from nectar.deps import Services, ServicesDep
from nectar.errors import Forbidden
from nectar.users import service
from nectar.users.exceptions import InvalidToken
from nectar.users.models import AccessToken, Role, User

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)


async def _lookup(services: Services, token: str | None) -> tuple[User, AccessToken]:
    """A short read of its own, not the request's unit of work: on SQLite a transaction
    holds the write lock, and the request may run long (a stream, a wait)."""
    if not token:
        raise InvalidToken()
    async with services.sessions() as session:
        return await service.user_for_token(session, token)


async def _authenticated(
    request: Request,
    services: ServicesDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> tuple[User, AccessToken]:
    user, access = await _lookup(services, token)
    request.state.user_id = str(user.id)
    return user, access


Authenticated = Annotated[tuple[User, AccessToken], Depends(_authenticated)]


async def current_user(auth: Authenticated) -> User:
    return auth[0]


CurrentUser = Annotated[User, Depends(current_user)]


async def _stream_user(
    services: ServicesDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
    access_token: Annotated[
        str | None, Query(description="for EventSource, which cannot send headers")
    ] = None,
) -> User:
    user, _ = await _lookup(services, token or access_token)
    return user


# For Server-Sent Events endpoints: the token from the header, or from ?access_token=.
StreamUser = Annotated[User, Depends(_stream_user)]


def require_roles(*roles: Role) -> object:
    allowed = {r.value for r in roles}
    names = " or ".join(sorted(allowed))

    async def check(user: CurrentUser) -> User:
        if user.role not in allowed:
            raise Forbidden(f"this action needs the role {names}")
        return user

    return Depends(check)


AdminUser = Annotated[User, require_roles(Role.admin)]
BotManager = Annotated[User, require_roles(Role.admin, Role.member)]
HandoffWorker = Annotated[User, require_roles(Role.admin, Role.agent, Role.member)]
