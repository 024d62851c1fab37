"""Users, sign-in and access tokens."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nectar import security
from nectar.db import utcnow
from nectar.errors import BadRequest, Forbidden, TooManyRequests
from nectar.pagination import PageParams, Pagination
from nectar.ratelimit import Limiter
from nectar.settings import Settings
from nectar.users.exceptions import (
    EmailTaken,
    InvalidCredentials,
    InvalidToken,
    LastAdmin,
    UserNotFound,
    UserOwnsBots,
)
from nectar.users.models import AccessToken, Role, User
from nectar.users.schemas import UserCreate, UserUpdate


async def create_user(session: AsyncSession, data: UserCreate) -> User:
    user = User(
        email=data.email,
        name=data.name,
        role=data.role.value,
        password_hash=await asyncio.to_thread(security.hash_password, data.password),
    )
    session.add(user)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise EmailTaken() from None
    return user


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.exec(select(User).where(User.email == email.strip().lower()))
    return result.first()


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise UserNotFound()
    return user


async def read_user(session: AsyncSession, actor: User, user_id: uuid.UUID) -> User:
    """Admins may read anyone; other users only themselves (others are 'not found')."""
    if actor.role != Role.admin.value and actor.id != user_id:
        raise UserNotFound()
    return await get_user(session, user_id)


async def list_users(
    session: AsyncSession, page: PageParams, role: Role | None, search: str | None
) -> tuple[list[User], Pagination]:
    query = select(User)
    if role is not None:
        query = query.where(User.role == role.value)
    if search:
        pattern = f"%{_escape_like(search.lower())}%"
        query = query.where(
            sa.or_(
                col(User.email).like(pattern, escape="\\"),
                func.lower(User.name).like(pattern, escape="\\"),
            )
        )
    total = (await session.exec(select(func.count()).select_from(query.subquery()))).one()
    rows = await session.exec(
        query.order_by(col(User.created_at), col(User.id)).offset(page.offset).limit(page.per_page)
    )
    return list(rows), page.result(total)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def _active_admins(session: AsyncSession) -> int:
    query = select(func.count()).where(User.role == Role.admin.value, col(User.is_active))
    return (await session.exec(query)).one()


async def update_user(
    session: AsyncSession, actor: User, user_id: uuid.UUID, data: UserUpdate
) -> User:
    user = await get_user(session, user_id)
    is_admin = actor.role == Role.admin.value
    if not is_admin:
        if user.id != actor.id:
            raise UserNotFound()
        if data.role is not None or data.is_active is not None:
            raise Forbidden("only an admin can change roles or deactivate users")
    if data.password is not None and user.id == actor.id:
        ok = bool(data.current_password) and await asyncio.to_thread(
            security.verify_password, data.current_password or "", user.password_hash
        )
        if not ok:
            raise BadRequest("current_password is missing or wrong")
    losing_admin = user.role == Role.admin.value and (
        (data.role is not None and data.role != Role.admin) or data.is_active is False
    )
    if losing_admin and user.is_active and await _active_admins(session) <= 1:
        raise LastAdmin()
    if data.name is not None:
        user.name = data.name
    if data.role is not None:
        user.role = data.role.value
    if data.is_active is not None:
        user.is_active = data.is_active
    if data.password is not None:
        user.password_hash = await asyncio.to_thread(security.hash_password, data.password)
    if data.password is not None or data.is_active is False:
        await revoke_all_tokens(session, user.id)
    user.updated_at = utcnow()
    session.add(user)
    await session.flush()
    return user


async def delete_user(session: AsyncSession, user_id: uuid.UUID) -> None:
    from nectar.bots.models import NectarBot

    user = await get_user(session, user_id)
    if user.role == Role.admin.value and user.is_active and await _active_admins(session) <= 1:
        raise LastAdmin()
    owned = (await session.exec(select(func.count()).where(NectarBot.owner_id == user.id))).one()
    if owned:
        raise UserOwnsBots(owned)
    await session.delete(user)
    await session.flush()


# --- sign-in -------------------------------------------------------------------------------


async def _check_login_limits(limiter: Limiter, settings: Settings, email: str, ip: str) -> None:
    window = settings.login_window_seconds
    for key, limit in (
        (f"login:acct:{email}", settings.login_max_failures_per_account),
        (f"login:ip:{ip}", settings.login_max_failures_per_ip),
    ):
        state = await limiter.peek(key, limit, window)
        if state.count >= limit:
            raise TooManyRequests(
                "too many failed sign-in attempts; try again later", retry_after=state.reset_in
            )


async def authenticate(
    session: AsyncSession,
    limiter: Limiter,
    settings: Settings,
    email: str,
    password: str,
    ip: str,
) -> tuple[str, int]:
    """Check the password and issue an access token; failures are counted per account and IP."""
    email = email.strip().lower()
    await _check_login_limits(limiter, settings, email, ip)
    user = await get_by_email(session, email)
    ok = await asyncio.to_thread(
        security.verify_password, password, user.password_hash if user else None
    )
    if not ok or user is None or not user.is_active:
        window = settings.login_window_seconds
        await limiter.hit(f"login:acct:{email}", settings.login_max_failures_per_account, window)
        await limiter.hit(f"login:ip:{ip}", settings.login_max_failures_per_ip, window)
        raise InvalidCredentials()
    await limiter.clear(f"login:acct:{email}", settings.login_window_seconds)
    token = security.new_access_token()
    now = utcnow()
    session.add(
        AccessToken(
            user_id=user.id,
            token_hash=security.hash_secret(token),
            created_at=now,
            expires_at=now + timedelta(seconds=settings.token_ttl_seconds),
        )
    )
    user.last_login_at = now
    session.add(user)
    await session.flush()
    return token, settings.token_ttl_seconds


async def user_for_token(session: AsyncSession, token: str) -> tuple[User, AccessToken]:
    query = (
        select(User, AccessToken)
        .join(AccessToken, col(AccessToken.user_id) == col(User.id))
        .where(
            AccessToken.token_hash == security.hash_secret(token),
            col(AccessToken.revoked_at).is_(None),
            col(AccessToken.expires_at) > utcnow(),
            col(User.is_active),
        )
    )
    row = (await session.exec(query)).first()
    if row is None:
        raise InvalidToken()
    return row[0], row[1]


async def revoke_token(session: AsyncSession, token: AccessToken) -> None:
    token.revoked_at = utcnow()
    session.add(token)
    await session.flush()


async def revoke_all_tokens(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.exec(
        sa.update(AccessToken)
        .where(col(AccessToken.user_id) == user_id, col(AccessToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )


async def ensure_admin(session: AsyncSession, email: str, password: str) -> bool:
    """Create this admin unless a user with the email exists. True if it was created."""
    if await get_by_email(session, email) is not None:
        return False
    try:
        await create_user(
            session, UserCreate(email=email, password=password, name="Admin", role=Role.admin)
        )
    except EmailTaken:  # another replica created it at the same moment
        return False
    return True


async def any_admin(session: AsyncSession) -> bool:
    query = select(User.id).where(User.role == Role.admin.value).limit(1)
    return (await session.exec(query)).first() is not None
