"""The YAML config (``nectar_bots``) and the NECTAR_* settings: what loads, what stops start-up."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from nectar.config import ConfigError, NectarBotsConfig, load_config, parse_config
from nectar.settings import Settings, SettingsError, check_unknown_env, load_settings
from tests.conftest import CONFIG

# Every ${VAR} the shipped config/config.yml interpolates for an integration.
INTEGRATION_VARS = (
    "SLACK_WEBHOOK_URL",
    "TEAMS_WEBHOOK_URL",
    "ZENDESK_API_URL",
    "ZENDESK_EMAIL",
    "ZENDESK_API_KEY",
    "PAGERDUTY_KEY",
    "SERVICENOW_URL",
    "SERVICENOW_USER",
    "SERVICENOW_PASSWORD",
)
PLATFORMS = ("slack", "teams", "zendesk", "pagerduty", "servicenow", "webhook")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No NECTAR_* setting and no integration secret from the developer's shell."""
    for key in list(os.environ):
        if key.upper().startswith("NECTAR_") or key in INTEGRATION_VARS:
            monkeypatch.delenv(key)
    return monkeypatch


def parse(text: str) -> NectarBotsConfig:
    return parse_config(yaml.safe_load(textwrap.dedent(text)))


def rejected(raw: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return str(info.value)


def at(path: str, value: Any) -> dict[str, Any]:
    """``at("a.b.0.c", 1)`` is ``{"a": {"b": [{"c": 1}]}}``."""
    node: Any = value
    for part in reversed(path.split(".")):
        node = [node] if part.isdigit() else {part: node}
    return dict(node)


# --- the two seed shapes ---------------------------------------------------------------------

FORM_A = """
nectar_bots:
  handoff:
    enabled: true
    mode: "ce_internal"
    triggers:
      confidence_threshold: 0.55
      keywords: ["human help", "speak to person", "escalate"]
      max_conversation_length: 12
    notifications:
      target_roles: ["admin", "agent"]
      notification_types: ["in_app", "email"]
    integrations:
      slack: {enabled: false}
      teams: {enabled: false}
      zendesk: {enabled: false}
      pagerduty: {enabled: false}
"""

FORM_B = """
nectar_bots:
  handoff:
    enabled: true
    mode: "ce_internal"
    ce_internal:
      notification_methods: ["in_app", "email"]
      target_roles: ["admin", "agent"]
      triggers:
        confidence_threshold: 0.55
        keywords: ["human help", "speak to person", "escalate"]
        max_conversation_length: 12
    enterprise_external:
      webhooks:
        slack: {enabled: false}
        teams: {enabled: false}
        zendesk: {enabled: false}
        pagerduty: {enabled: false}
"""


def test_both_seed_forms_load_into_the_same_settings() -> None:
    a, b = parse(FORM_A), parse(FORM_B)

    assert a == b
    handoff = b.handoff
    assert handoff.triggers.confidence_threshold == 0.55
    assert handoff.triggers.keywords == ["human help", "speak to person", "escalate"]
    assert handoff.triggers.max_conversation_length == 12
    assert handoff.notifications.notification_types == ["in_app", "email"]
    assert handoff.notifications.target_roles == ["admin", "agent"]
    assert handoff.integrations.slack.enabled is False
    assert not any(getattr(handoff.integrations, p).is_active for p in PLATFORMS)
    # Not merely equal because both fell back to the defaults.
    assert b != NectarBotsConfig()


def test_the_seed_examples_load_as_written() -> None:
    ce = parse("""
        nectar_bots:
          handoff:
            enabled: true
            mode: "ce_internal"
            triggers:
              confidence_threshold: 0.6
              keywords: ["human help", "speak to person", "escalate"]
              max_conversation_length: 20
            notifications:
              target_roles: ["admin"]
              notification_types: ["in_app", "email"]
              urgency_levels: {low: "info", medium: "warning", high: "critical"}
        """)
    assert ce.handoff.mode == "ce_internal"
    assert ce.handoff.notifications.urgency_levels["high"] == "critical"

    enterprise = parse("""
        nectar_bots:
          handoff:
            mode: "enterprise_external"
            integrations:
              slack:
                webhook_url: "https://hooks.slack.com/services/T0/B0/xyz"
                channel: "#customer-support"
                mention_groups: ["@support-team"]
              pagerduty:
                integration_key: "pd-routing-key"
                severity: "warning"
        """)
    integrations = enterprise.handoff.integrations
    assert enterprise.handoff.mode == "enterprise_external"
    assert integrations.slack.is_active
    assert integrations.slack.channel == "#customer-support"
    assert integrations.pagerduty.is_active
    assert not integrations.zendesk.is_active


def test_shipped_config_loads(clean_env: pytest.MonkeyPatch) -> None:
    config = load_config(CONFIG)

    handoff = config.handoff
    assert config.enabled
    assert handoff.enabled
    assert handoff.mode == "ce_internal"
    assert handoff.triggers.confidence_threshold == 0.6
    assert handoff.triggers.max_conversation_length == 20
    assert config.defaults.confidence_threshold == 0.7
    assert config.defaults.rate_limit_per_hour == 100
    assert config.defaults.rate_limit_per_day == 1000
    assert set(handoff.notifications.urgency_levels) == {"low", "medium", "high", "critical"}
    # No secret in the environment: every integration stays off instead of failing.
    assert not any(getattr(handoff.integrations, p).is_active for p in PLATFORMS)


# --- ${VAR} interpolation --------------------------------------------------------------------


def test_variables_are_taken_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFGTEST_SLACK_URL", "https://hooks.slack.com/services/T1/B1/abc")
    monkeypatch.setenv("CFGTEST_ZENDESK_HOST", "acme.zendesk.com")
    monkeypatch.setenv("CFGTEST_MODE", "enterprise_external")
    monkeypatch.delenv("CFGTEST_UNSET", raising=False)

    config = parse("""
        nectar_bots:
          handoff:
            mode: "${CFGTEST_MODE:-ce_internal}"
            integrations:
              slack:
                webhook_url: "${CFGTEST_SLACK_URL}"
                channel: "${CFGTEST_UNSET:-#support}"
              zendesk:
                api_endpoint: "https://${CFGTEST_ZENDESK_HOST}/api/v2"
                email: "${CFGTEST_UNSET}"
        """)

    integrations = config.handoff.integrations
    assert config.handoff.mode == "enterprise_external"
    assert integrations.slack.webhook_url is not None
    assert (
        integrations.slack.webhook_url.get_secret_value()
        == "https://hooks.slack.com/services/T1/B1/abc"
    )
    assert integrations.slack.channel == "#support"
    assert integrations.zendesk.api_endpoint == "https://acme.zendesk.com/api/v2"
    assert integrations.zendesk.email == ""


def test_default_is_used_only_when_the_variable_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    text = 'nectar_bots: {handoff: {mode: "${CFGTEST_MODE:-enterprise_external}"}}'
    monkeypatch.delenv("CFGTEST_MODE", raising=False)
    assert parse(text).handoff.mode == "enterprise_external"
    monkeypatch.setenv("CFGTEST_MODE", "ce_internal")
    assert parse(text).handoff.mode == "ce_internal"


def test_an_interpolated_bad_value_is_rejected_naming_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CFGTEST_MODE", "hybrid")
    with pytest.raises(ConfigError, match=r"nectar_bots\.handoff\.mode"):
        parse('nectar_bots: {handoff: {mode: "${CFGTEST_MODE}"}}')


def test_shipped_config_turns_an_integration_on_from_the_environment(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("PAGERDUTY_KEY", "R0UT1NG-KEY-0123456789")
    clean_env.setenv("NECTAR_HANDOFF_MODE", "enterprise_external")

    settings = load_settings(config=CONFIG)

    handoff = settings.nectar_bots.handoff
    assert handoff.mode == "enterprise_external"
    assert handoff.integrations.pagerduty.is_active
    assert not handoff.integrations.slack.is_active


# --- rejected files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "nectar_bots.bogus",
        "nectar_bots.defaults.bogus",
        "nectar_bots.handoff.bogus",
        "nectar_bots.handoff.triggers.bogus",
        "nectar_bots.handoff.notifications.bogus",
        "nectar_bots.handoff.integrations.fax",
        "nectar_bots.handoff.integrations.slack.bogus",
        "nectar_bots.handoff.integrations.webhook.endpoints.0.bogus",
        "nectar_bots.handoff.ce_internal.bogus",
        "nectar_bots.handoff.ce_internal.triggers.bogus",
        "nectar_bots.handoff.enterprise_external.bogus",
        "nectar_bots.handoff.enterprise_external.webhooks.slack.bogus",
    ],
)
def test_unknown_key_is_rejected_naming_its_full_path(path: str) -> None:
    raw = at(path, 1)
    if ".endpoints." in path:  # a complete endpoint: the unknown key is its only fault
        endpoint = {"url": "https://hooks.example.com/n", "secret": "whsec_abc", "bogus": 1}
        raw = at(path.removesuffix(".bogus"), endpoint)

    message = rejected(raw)

    assert path in message


def test_unknown_top_level_section_is_rejected() -> None:
    message = rejected({"nectar_bots": {}, "nectar_bot": {"enabled": True}})
    assert "unknown key nectar_bot " in message


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("handoff.triggers.confidence_threshold", 1.5, "handoff.triggers.confidence_threshold"),
        ("handoff.mode", "hybrid", "handoff.mode"),
        (
            "handoff.notifications.notification_types",
            ["in_app", "fax"],
            "handoff.notifications.notification_types.1",
        ),
        (
            "handoff.ce_internal.notification_methods",
            ["pigeon"],
            "handoff.ce_internal.notification_methods.0",
        ),
        (
            "handoff.ce_internal.triggers.confidence_threshold",
            -0.1,
            "handoff.ce_internal.triggers.confidence_threshold",
        ),
        ("handoff.notifications.target_roles", ["owner"], "handoff.notifications.target_roles.0"),
        ("defaults.rate_limit_per_hour", 0, "defaults.rate_limit_per_hour"),
        (
            "handoff.integrations.zendesk.ticket_priority",
            "asap",
            "handoff.integrations.zendesk.ticket_priority",
        ),
    ],
)
def test_bad_value_is_rejected_naming_the_key(path: str, value: Any, named: str) -> None:
    assert f"nectar_bots.{named}" in rejected(at(f"nectar_bots.{path}", value))


@pytest.mark.parametrize(
    ("handoff", "named", "missing"),
    [
        (
            {
                "integrations": {
                    "zendesk": {
                        "enabled": True,
                        "api_endpoint": "https://acme.zendesk.com/api/v2",
                        "email": "support@acme.test",
                    }
                }
            },
            "nectar_bots.handoff.integrations.zendesk",
            "api_key",
        ),
        (
            {"enterprise_external": {"webhooks": {"pagerduty": {"enabled": True}}}},
            "nectar_bots.handoff.enterprise_external.webhooks.pagerduty",
            "integration_key",
        ),
        (
            # The usual deployment mistake: the variable the file refers to is not set.
            {"integrations": {"slack": {"enabled": True, "webhook_url": "${CFGTEST_UNSET}"}}},
            "nectar_bots.handoff.integrations.slack",
            "webhook_url",
        ),
    ],
)
def test_enabled_integration_missing_a_required_field_is_rejected(
    monkeypatch: pytest.MonkeyPatch, handoff: dict[str, Any], named: str, missing: str
) -> None:
    monkeypatch.delenv("CFGTEST_UNSET", raising=False)
    message = rejected({"nectar_bots": {"handoff": handoff}})
    assert named in message
    assert missing in message


def test_integration_without_enabled_is_active_only_when_filled_in() -> None:
    config = parse("""
        nectar_bots:
          handoff:
            integrations:
              slack: {webhook_url: "https://hooks.slack.com/services/T/B/x"}
              teams: {channel: "Support"}
              zendesk: {api_endpoint: "https://acme.zendesk.com/api/v2", email: "a@acme.test"}
              servicenow:
                instance_url: "https://acme.service-now.com"
                username: "nectar"
                password: "pw"
              pagerduty: {enabled: false, integration_key: "filled-but-off"}
        """)

    integrations = config.handoff.integrations
    assert integrations.slack.is_active
    assert integrations.servicenow.is_active
    assert not integrations.teams.is_active  # no webhook_url
    assert not integrations.zendesk.is_active  # no api_key
    assert not integrations.pagerduty.is_active  # explicitly off
    assert not integrations.webhook.is_active  # absent


def test_secrets_are_not_shown(clean_env: pytest.MonkeyPatch) -> None:
    secret = "xoxb-VERY-SECRET-9f8e7d"
    clean_env.setenv("CFGTEST_SECRET", secret)
    config = parse("""
        nectar_bots:
          handoff:
            integrations:
              slack: {webhook_url: "https://hooks.slack.com/services/${CFGTEST_SECRET}"}
              zendesk:
                api_endpoint: "https://acme.zendesk.com/api/v2"
                email: "a@acme.test"
                api_key: "${CFGTEST_SECRET}"
              servicenow: {instance_url: "https://x", username: "u", password: "${CFGTEST_SECRET}"}
              pagerduty: {integration_key: "${CFGTEST_SECRET}"}
              webhook:
                endpoints: [{url: "https://hooks.example.com/n", secret: "${CFGTEST_SECRET}"}]
        """)

    for shown in (repr(config), str(config), config.model_dump_json()):
        assert secret not in shown
    integrations = config.handoff.integrations
    assert integrations.zendesk.api_key is not None
    assert integrations.zendesk.api_key.get_secret_value() == secret
    assert integrations.webhook.endpoints[0].secret.get_secret_value() == secret

    settings = Settings(admin_password=secret, config=CONFIG)
    assert secret not in repr(settings)
    assert secret not in str(settings)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "not found" in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nectar_bots:\n  handoff: [unclosed\n", "not valid YAML"),
        ("nectar_bots:\n\thandoff: {}\n", "not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
    ],
)
def test_unparseable_file_is_a_clear_error(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "config.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


# --- NECTAR_* settings -----------------------------------------------------------------------


def test_unknown_nectar_variable_stops_start_up(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("NECTAR_DATABSE_URL", "postgresql+asyncpg://db/nectar")
    with pytest.raises(SettingsError, match="NECTAR_DATABSE_URL"):
        load_settings(config=CONFIG)


def test_variable_used_by_the_config_file_is_not_unknown(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("NECTAR_HANDOFF_MODE", "ce_internal")
    assert load_settings(config=CONFIG).nectar_bots.handoff.mode == "ce_internal"
    # A typo of it is still a typo.
    clean_env.setenv("NECTAR_HANDOF_MODE", "enterprise_external")
    with pytest.raises(SettingsError, match="NECTAR_HANDOF_MODE"):
        load_settings(config=CONFIG)


def test_check_unknown_env_names_only_the_unknown() -> None:
    check_unknown_env({"NECTAR_PORT": "8000", "NECTAR_TEST_PG_DSN": "x", "HOME": "/root"})
    with pytest.raises(SettingsError) as info:
        check_unknown_env({"NECTAR_PORT": "8000", "NECTAR_REDIS": "redis://"})
    assert str(info.value).startswith("unknown setting NECTAR_REDIS;")


@pytest.mark.parametrize(
    "url",
    ["postgresql://postgres@127.0.0.1/nectar", "mysql+aiomysql://u@h/db", "sqlite:///nectar.db"],
)
def test_database_url_with_another_driver_is_rejected(
    clean_env: pytest.MonkeyPatch, url: str
) -> None:
    clean_env.setenv("NECTAR_DATABASE_URL", url)
    with pytest.raises(SettingsError) as info:
        load_settings(config=CONFIG)
    assert "NECTAR_DATABASE_URL" in str(info.value)
    assert "postgresql+asyncpg://" in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [("NECTAR_ADMIN_PASSWORD", "tiny-pw"), ("NECTAR_ADMIN_EMAIL", "not-an-email")],
)
def test_bad_admin_setting_is_rejected_without_echoing_it(
    clean_env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    clean_env.setenv("NECTAR_ADMIN_EMAIL", "owner@example.com")
    clean_env.setenv("NECTAR_ADMIN_PASSWORD", "long-enough-password")
    clean_env.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings(config=CONFIG)
    assert name in str(info.value)
    assert value not in str(info.value)


def test_blank_admin_settings_mean_unset(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("NECTAR_ADMIN_EMAIL", "")
    clean_env.setenv("NECTAR_ADMIN_PASSWORD", "")
    settings = load_settings(config=CONFIG)
    assert settings.admin_email is None
    assert settings.admin_password is None


def test_environment_is_read(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'n.db'}"
    clean_env.setenv("NECTAR_DATABASE_URL", url)
    clean_env.setenv("NECTAR_PORT", "9123")
    clean_env.setenv("NECTAR_CONFIG", str(CONFIG))
    settings = load_settings()
    assert settings.database_url == url
    assert settings.port == 9123
    assert settings.nectar_bots.handoff.triggers.confidence_threshold == 0.6


def test_bad_config_file_stops_load_settings(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("nectar_bots:\n  handoff:\n    triggers:\n      keyword: [x]\n")
    clean_env.setenv("NECTAR_CONFIG", str(path))
    with pytest.raises(ConfigError, match=r"nectar_bots\.handoff\.triggers\.keyword"):
        load_settings()
