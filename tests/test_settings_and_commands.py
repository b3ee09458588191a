"""Start-up behaviour: production refuses half-configured settings; the `smsdesk` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from smsdesk.sms.checks import provider_settings

SMSDESK = [sys.executable, "-m", "smsdesk"]


def ids(settings_problems: list) -> set[str]:  # type: ignore[type-arg]
    return {problem.id for problem in settings_problems}


def test_production_without_secrets_lists_every_missing_setting(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PRODUCTION = True
    settings.SMSDESK_SECRET_KEY_SET = False
    assert ids(provider_settings()) == {"smsdesk.E002", "smsdesk.E003", "smsdesk.E004"}


def test_production_with_a_signing_key_or_a_webhook_token_passes(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PRODUCTION = True
    settings.SMSDESK_SECRET_KEY_SET = True
    settings.MESSAGEBIRD_ACCESS_KEY = "live_x"
    settings.MESSAGEBIRD_ORIGINATOR = "+3197010254321"
    settings.MESSAGEBIRD_SIGNING_KEY = "signing"
    assert provider_settings() == []
    settings.MESSAGEBIRD_SIGNING_KEY = ""
    settings.SMSDESK_WEBHOOK_TOKEN = "a-long-random-token"
    assert provider_settings() == []


def test_demo_mode_warns_that_webhooks_are_unsigned() -> None:
    assert ids(provider_settings()) == {"smsdesk.W001"}


def test_an_access_key_needs_an_originator(settings) -> None:  # type: ignore[no-untyped-def]
    settings.MESSAGEBIRD_ACCESS_KEY = "test_x"
    assert "smsdesk.E001" in ids(provider_settings())


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MESSAGEBIRD_", "SMSDESK_", "DJANGO_"))
    }
    env["DATABASE_URL"] = f"sqlite:///{tmp_path}/desk.sqlite3"
    env.update(extra)
    return env


def test_serve_refuses_to_start_in_production_and_says_what_is_missing(tmp_path: Path) -> None:
    result = subprocess.run(
        [*SMSDESK, "serve", "--port", "0"],
        cwd=tmp_path,
        env=clean_env(tmp_path, SMSDESK_ENV="production"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    for name in (
        "SMSDESK_SECRET_KEY",
        "MESSAGEBIRD_SIGNING_KEY",
        "SMSDESK_WEBHOOK_TOKEN",
        "MESSAGEBIRD_ACCESS_KEY",
    ):
        assert name in result.stderr
    assert (
        not (tmp_path / "desk.sqlite3").exists() or "Created the first agent" not in result.stdout
    )


def test_a_dot_env_file_is_read_like_the_samples_env_example(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "MESSAGEBIRD_ACCESS_KEY=test_from_dotenv\nMESSAGEBIRD_ORIGINATOR=+3197010254321\n"
    )
    result = subprocess.run(
        [
            *SMSDESK,
            "shell",
            "-c",
            "from django.conf import settings; print(settings.SMSDESK_PROVIDER, settings.MESSAGEBIRD_ACCESS_KEY)",
        ],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "messagebird test_from_dotenv" in result.stdout


@pytest.mark.django_db
def test_createsuperuser_works_without_prompts(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-good-long-password")
    call_command(
        "createsuperuser", "--noinput", "--username", "lead", "--email", "lead@example.com"
    )
    user = get_user_model().objects.get(username="lead")
    assert user.is_superuser and user.check_password("a-good-long-password")
