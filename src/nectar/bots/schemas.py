from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from nectar.bots.models import BotStatus
from nectar.pagination import Pagination

BotName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Slug = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=64, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
    ),
]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Keyword = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


def _dedupe(values: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for value in values:
        seen.setdefault(value.lower(), value)
    return list(seen.values())


def _unique(values: list[uuid.UUID]) -> list[uuid.UUID]:
    return list(dict.fromkeys(values))


Keywords = Annotated[list[Keyword], Field(max_length=100), AfterValidator(_dedupe)]
JarIds = Annotated[list[uuid.UUID], Field(max_length=50), AfterValidator(_unique)]


class _BotFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: Slug | None = None
    description: Annotated[str, Field(max_length=2000)] | None = None
    system_prompt: Annotated[str, Field(max_length=20_000)] | None = None
    honey_jar_ids: JarIds | None = None
    max_conversation_length: Annotated[int, Field(ge=2, le=1000)] | None = None
    confidence_threshold: Probability | None = None
    rate_limit_per_hour: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = None
    rate_limit_per_day: Annotated[int, Field(ge=1, le=10_000_000_000)] | None = None
    is_public: bool | None = None
    handoff_enabled: bool | None = None
    handoff_keywords: Keywords | None = None
    handoff_confidence_threshold: Probability | None = None
    status: BotStatus | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        # ``None`` above means "not sent"; an explicit null would otherwise be stored as the
        # default on create and be a 400 on update. Only a slug may be cleared.
        if value is None and info.field_name != "slug":
            raise PydanticCustomError("null_not_allowed", "may not be null; leave it out instead")
        return value

    @model_validator(mode="after")
    def _limits_consistent(self) -> _BotFields:
        hour, day = self.rate_limit_per_hour, self.rate_limit_per_day
        if hour is not None and day is not None and day < hour:
            raise ValueError("rate_limit_per_day must be at least rate_limit_per_hour")
        return self


class BotCreate(_BotFields):
    """Fields left out take the defaults of the ``nectar_bots`` config section."""

    name: BotName


class BotUpdate(_BotFields):
    """Only the fields sent are changed."""

    name: BotName | None = None


class BotPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    slug: str | None
    description: str
    system_prompt: str
    honey_jar_ids: list[uuid.UUID]
    max_conversation_length: int
    confidence_threshold: float
    rate_limit_per_hour: int
    rate_limit_per_day: int
    is_public: bool
    handoff_enabled: bool
    handoff_keywords: list[str]
    handoff_confidence_threshold: float
    status: BotStatus
    api_key_hint: str
    api_key_created_at: datetime
    created_at: datetime
    updated_at: datetime


class BotWithKey(BotPublic):
    api_key: str = Field(description="shown only now; store it, it cannot be read back")


class BotEnvelope(BaseModel):
    message: str
    bot: BotPublic | BotWithKey


class BotList(BaseModel):
    bots: list[BotPublic]
    pagination: Pagination


class ApiKeyEnvelope(BaseModel):
    message: str
    api_key: str


def bot_public(bot: Any, jar_ids: list[uuid.UUID]) -> BotPublic:
    data = {name: getattr(bot, name) for name in BotPublic.model_fields if name != "honey_jar_ids"}
    return BotPublic.model_validate({**data, "honey_jar_ids": jar_ids})
