"""The ``nectar_bots`` section of the YAML config file.

Both shapes found in the seed documents load into one canonical model:

* ``handoff.triggers`` / ``handoff.notifications`` / ``handoff.integrations``
* ``handoff.ce_internal`` / ``handoff.enterprise_external.webhooks``

``${VAR}`` and ``${VAR:-default}`` are replaced from the environment. Unknown keys are errors.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_core import PydanticCustomError

Urgency = Literal["low", "medium", "high", "critical"]
Severity = Literal["info", "warning", "error", "critical"]
NotificationType = Literal[
    "in_app", "email", "slack", "teams", "pagerduty", "zendesk", "servicenow", "webhook"
]
Role = Literal["admin", "agent", "member"]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The config file is unreadable or invalid; the message names the offending key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TriggerConfig(_Strict):
    confidence_threshold: float = Field(default=0.6, ge=0, le=1)
    # Phrases that mean "get me a person". Matched as whole phrases, never as substrings.
    keywords: list[str] = Field(
        default_factory=lambda: [
            "speak to a person",
            "talk to a human",
            "human agent",
            "real person",
            "live agent",
        ]
    )
    max_conversation_length: int = Field(default=20, ge=2, le=10_000)
    # Escalate a conversation that has run longer than this many minutes (0 = never).
    max_conversation_minutes: int = Field(default=0, ge=0)


_SEVERITIES: dict[Urgency, Severity] = {
    "low": "info",
    "medium": "warning",
    "high": "critical",
    "critical": "critical",
}


class EmailConfig(_Strict):
    """SMTP for the ``email`` notification type."""

    smtp_host: str = "localhost"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    # none: plain SMTP (a local relay); starttls: upgrade on 587; tls: implicit TLS on 465.
    security: Literal["none", "starttls", "tls"] = "none"
    from_address: str = "Nectar <nectar@localhost>"
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)


class DeliveryConfig(_Strict):
    """How hard the worker tries before a delivery is dead."""

    max_attempts: int = Field(default=6, ge=1, le=50)
    base_delay_seconds: float = Field(default=2.0, gt=0, le=3600)
    max_delay_seconds: float = Field(default=600.0, gt=0, le=86400)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # A delivery still pending this long after it was due is re-enqueued by the sweeper.
    sweep_after_seconds: float = Field(default=5.0, gt=0, le=3600)


class NotificationsConfig(_Strict):
    target_roles: list[Role] = Field(default_factory=lambda: list[Role](["admin"]))
    notification_types: list[NotificationType] = Field(
        default_factory=lambda: list[NotificationType](["in_app"])
    )
    urgency_levels: dict[Urgency, Severity] = Field(default_factory=lambda: dict(_SEVERITIES))
    email: EmailConfig = Field(default_factory=EmailConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)

    def severity(self, urgency: str) -> Severity:
        """The seed's mapping may leave levels out (it has no ``critical``): fill from ours."""
        for level, severity in self.urgency_levels.items():
            if level == urgency:
                return severity
        for level, severity in _SEVERITIES.items():
            if level == urgency:
                return severity
        return "warning"


class _Integration(_Strict):
    """`enabled` left out means: on when its required settings are filled in."""

    enabled: bool | None = None
    required: ClassVar[tuple[str, ...]] = ()

    @property
    def is_active(self) -> bool:
        if self.enabled is False:
            return False
        return all(_filled(getattr(self, name)) for name in self.required)

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> _Integration:
        if self.enabled:
            missing = [name for name in self.required if not _filled(getattr(self, name))]
            if missing:
                raise ValueError(f"enabled but missing {', '.join(missing)}")
        return self


def _filled(value: object) -> bool:
    if isinstance(value, SecretStr):
        return bool(value.get_secret_value())
    return bool(value)


class SlackConfig(_Integration):
    webhook_url: SecretStr | None = None
    channel: str | None = None
    mention_groups: list[str] = Field(default_factory=list)
    required = ("webhook_url",)


class TeamsConfig(_Integration):
    webhook_url: SecretStr | None = None
    channel: str | None = None
    required = ("webhook_url",)


class ZendeskConfig(_Integration):
    api_endpoint: str | None = None
    email: str | None = None
    api_key: SecretStr | None = None
    ticket_priority: Literal["low", "normal", "high", "urgent"] = "normal"
    required = ("api_endpoint", "email", "api_key")


class PagerDutyConfig(_Integration):
    integration_key: SecretStr | None = None
    severity: Severity = "warning"
    events_url: str = "https://events.pagerduty.com/v2/enqueue"
    required = ("integration_key",)


class ServiceNowConfig(_Integration):
    instance_url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    assignment_group: str | None = None
    # What a resolved incident is closed with; instances differ ("Solution provided"...).
    close_code: str = "Solved (Permanently)"
    required = ("instance_url", "username", "password")


class WebhookEndpoint(_Strict):
    url: str
    secret: SecretStr
    event_types: list[str] = Field(default_factory=list)


class WebhookConfig(_Integration):
    endpoints: list[WebhookEndpoint] = Field(default_factory=list)
    required = ("endpoints",)


class IntegrationsConfig(_Strict):
    slack: SlackConfig = Field(default_factory=SlackConfig)
    teams: TeamsConfig = Field(default_factory=TeamsConfig)
    zendesk: ZendeskConfig = Field(default_factory=ZendeskConfig)
    pagerduty: PagerDutyConfig = Field(default_factory=PagerDutyConfig)
    servicenow: ServiceNowConfig = Field(default_factory=ServiceNowConfig)
    webhook: WebhookConfig = Field(default_factory=WebhookConfig)
    # Hosts or CIDR ranges that may be targeted although they are private or loopback.
    allow_private_hosts: list[str] = Field(default_factory=list)


class SlaTarget(_Strict):
    accept_minutes: int = Field(ge=1)
    resolve_minutes: int = Field(ge=1)


class SlaConfig(_Strict):
    """Time to accept and time to resolve, per urgency."""

    critical: SlaTarget = SlaTarget(accept_minutes=5, resolve_minutes=60)
    high: SlaTarget = SlaTarget(accept_minutes=15, resolve_minutes=240)
    medium: SlaTarget = SlaTarget(accept_minutes=60, resolve_minutes=1440)
    low: SlaTarget = SlaTarget(accept_minutes=240, resolve_minutes=2880)

    def for_urgency(self, urgency: str) -> SlaTarget:
        target: SlaTarget = getattr(self, urgency)
        return target


class HandoffMessages(_Strict):
    """What the end user is told, in the conversation."""

    handoff_notice: str = (
        "I'm passing this conversation to a member of our support team. They'll reply right "
        "here as soon as they can."
    )
    resolved_notice: str = "Our support team has marked this conversation as resolved."
    waiting_notice: str = "A member of our team has your conversation and will reply here."


class HandoffConfig(_Strict):
    enabled: bool = True
    mode: Literal["ce_internal", "enterprise_external"] = "ce_internal"
    triggers: TriggerConfig = Field(default_factory=TriggerConfig)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    integrations: IntegrationsConfig = Field(default_factory=IntegrationsConfig)
    sla: SlaConfig = Field(default_factory=SlaConfig)
    messages: HandoffMessages = Field(default_factory=HandoffMessages)

    @model_validator(mode="before")
    @classmethod
    def _fold_edition_blocks(cls, data: Any) -> Any:
        """Fold the seed's ``ce_internal``/``enterprise_external`` form into the canonical one."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        ce = data.pop("ce_internal", None)
        if ce is not None:
            if not isinstance(ce, dict):
                raise ValueError("ce_internal must be a mapping")
            ce = dict(ce)
            notifications = dict(data.get("notifications") or {})
            _move(ce, "notification_methods", notifications, "notification_types", "ce_internal")
            _move(ce, "target_roles", notifications, "target_roles", "ce_internal")
            if notifications:
                data["notifications"] = notifications
            if "triggers" in ce:
                if "triggers" in data:
                    raise ValueError("triggers given both in handoff and in ce_internal")
                data["triggers"] = ce.pop("triggers")
            if ce:
                raise _unknown_keys("ce_internal", ce)
        ee = data.pop("enterprise_external", None)
        if ee is not None:
            if not isinstance(ee, dict):
                raise ValueError("enterprise_external must be a mapping")
            ee = dict(ee)
            platforms = ee.pop("webhooks", None) or ee.pop("integrations", None) or {}
            if ee:
                raise _unknown_keys("enterprise_external", ee)
            if platforms and "integrations" in data:
                raise ValueError("integrations given both in handoff and in enterprise_external")
            if platforms:
                data["integrations"] = platforms
        return data


def _unknown_keys(block: str, leftovers: dict[str, Any]) -> PydanticCustomError:
    # The error is raised at the handoff level; the paths let parse_config name each key.
    paths = tuple(f"{block}.{key}" for key in sorted(leftovers))
    return PydanticCustomError(
        "unknown_key", "unknown key {keys}", {"keys": ", ".join(paths), "paths": paths}
    )


def _move(src: dict[str, Any], key: str, dst: dict[str, Any], dst_key: str, where: str) -> None:
    if key in src:
        if dst_key in dst:
            raise ValueError(f"{dst_key} given both in notifications and in {where}.{key}")
        dst[dst_key] = src.pop(key)


class BotDefaults(_Strict):
    confidence_threshold: float = Field(default=0.7, ge=0, le=1)
    rate_limit_per_hour: int = Field(default=100, ge=1)
    rate_limit_per_day: int = Field(default=1000, ge=1)


class OpenAIConfig(_Strict):
    """Any OpenAI-compatible chat completions endpoint: OpenAI, vLLM, Ollama, llama.cpp."""

    base_url: str = "https://api.openai.com/v1"
    api_key: SecretStr | None = None
    model: str = "gpt-4o-mini"
    timeout_seconds: float = Field(default=20.0, gt=0, le=300)
    temperature: float = Field(default=0.2, ge=0, le=2)
    max_tokens: int = Field(default=400, ge=16, le=16_384)
    # Ask for token log-probabilities (used for confidence when the server returns them).
    logprobs: bool = True
    history_messages: int = Field(default=6, ge=0, le=50)


class ResponderConfig(_Strict):
    provider: Literal["builtin", "openai"] = "builtin"
    # Passages retrieved per turn and handed to the responder.
    passages: int = Field(default=12, ge=1, le=50)
    openai: OpenAIConfig = Field(default_factory=OpenAIConfig)


class NectarBotsConfig(_Strict):
    enabled: bool = True
    defaults: BotDefaults = Field(default_factory=BotDefaults)
    responder: ResponderConfig = Field(default_factory=ResponderConfig)
    handoff: HandoffConfig = Field(default_factory=HandoffConfig)


def interpolate(value: Any, path: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: interpolate(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            return default if default is not None else ""

        return _VAR.sub(repl, value)
    return value


def parse_config(raw: Any, source: str = "config") -> NectarBotsConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    unknown = sorted(set(raw) - {"nectar_bots"})
    if unknown:
        raise ConfigError(f"{source}: unknown key {', '.join(unknown)} (expected nectar_bots)")
    section = interpolate(raw.get("nectar_bots") or {}, "nectar_bots")
    try:
        return NectarBotsConfig.model_validate(section)
    except ValidationError as exc:
        problems: list[str] = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in ("nectar_bots", *_as_written(err["loc"], section)))
            if err["type"] == "unknown_key":
                problems.extend(f"{loc}.{path}: unknown key" for path in err["ctx"]["paths"])
            else:
                problems.append(f"{loc}: {err['msg']}")
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None


# Where the seed's ce_internal/enterprise_external form puts what the canonical model holds.
_CE_INTERNAL_PLACES = (
    (("triggers",), "triggers"),
    (("notifications", "notification_types"), "notification_methods"),
    (("notifications", "target_roles"), "target_roles"),
)


def _as_written(loc: tuple[int | str, ...], section: Any) -> tuple[int | str, ...]:
    """Name an error's location as the file spelled it, not as the canonical model holds it."""
    handoff = section.get("handoff") if isinstance(section, dict) else None
    if loc[:1] != ("handoff",) or not isinstance(handoff, dict):
        return loc
    rest = loc[1:]
    ce = handoff.get("ce_internal")
    if isinstance(ce, dict):
        for canonical, key in _CE_INTERNAL_PLACES:
            if rest[: len(canonical)] == canonical and key in ce:
                return ("handoff", "ce_internal", key, *rest[len(canonical) :])
    ee = handoff.get("enterprise_external")
    if isinstance(ee, dict) and rest[:1] == ("integrations",):
        key = "webhooks" if ee.get("webhooks") else "integrations"
        if ee.get(key):
            return ("handoff", "enterprise_external", key, *rest[1:])
    return loc


def referenced_variables(path: Path) -> set[str]:
    """The environment variables a config file interpolates (empty if it cannot be read)."""
    try:
        return {match.group(1) for match in _VAR.finditer(path.read_text(encoding="utf-8"))}
    except (OSError, UnicodeDecodeError):
        return set()


def load_config(path: Path) -> NectarBotsConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found (set NECTAR_CONFIG)") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    return parse_config(raw, str(path))
