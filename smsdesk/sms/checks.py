"""Start-up checks: production refuses to run half-configured."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register


@register("smsdesk")
def provider_settings(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    problems: list[Error | Warning] = []
    if settings.MESSAGEBIRD_ACCESS_KEY and not settings.MESSAGEBIRD_ORIGINATOR:
        problems.append(
            Error(
                "MESSAGEBIRD_ORIGINATOR is not set.",
                hint="Set it to the virtual mobile number customers text, e.g. +3197010254321.",
                id="smsdesk.E001",
            )
        )
    webhook_auth = settings.MESSAGEBIRD_SIGNING_KEY or settings.SMSDESK_WEBHOOK_TOKEN
    if settings.PRODUCTION:
        if not settings.SMSDESK_SECRET_KEY_SET:
            problems.append(
                Error(
                    "SMSDESK_SECRET_KEY is not set.",
                    hint="Production needs a long random secret key for sessions and CSRF.",
                    id="smsdesk.E002",
                )
            )
        if not webhook_auth:
            problems.append(
                Error(
                    "Webhooks are not authenticated.",
                    hint="Set MESSAGEBIRD_SIGNING_KEY (signed webhooks) or SMSDESK_WEBHOOK_TOKEN "
                    "(a secret in the webhook URL).",
                    id="smsdesk.E003",
                )
            )
        if not settings.MESSAGEBIRD_ACCESS_KEY:
            problems.append(
                Error(
                    "MESSAGEBIRD_ACCESS_KEY is not set.",
                    hint="Production sends real SMS; the simulator is for demo mode only.",
                    id="smsdesk.E004",
                )
            )
    elif not webhook_auth:
        problems.append(
            Warning(
                "Webhooks are accepted unsigned (demo mode).",
                hint="Set MESSAGEBIRD_SIGNING_KEY or SMSDESK_WEBHOOK_TOKEN before real customers text.",
                id="smsdesk.W001",
            )
        )
    return problems
