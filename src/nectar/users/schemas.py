from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from nectar.pagination import Pagination
from nectar.users.models import Role

_EMAIL = r"^[^@\s]+@[^@\s]+$"


def _normalise_email(value: str) -> str:
    return value.strip().lower()


Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=320, pattern=_EMAIL),
    AfterValidator(_normalise_email),
]
Password = Annotated[str, Field(min_length=8, max_length=256)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserCreate(_Input):
    email: Email
    password: Password
    name: Name = ""
    role: Role = Role.member


class UserUpdate(_Input):
    """Admins may change everything; users may change their own name and password."""

    name: Name | None = None
    role: Role | None = None
    is_active: bool | None = None
    password: Password | None = None
    current_password: str | None = Field(
        default=None, description="required when changing your own password"
    )


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str
    role: Role
    is_active: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None


class UserEnvelope(BaseModel):
    message: str
    user: UserPublic


class UserList(BaseModel):
    users: list[UserPublic]
    pagination: Pagination


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105
    expires_in: int
