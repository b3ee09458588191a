"""Start-up checks for the desk's own settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from smsdesk.lib import hours


@register("smsdesk")
def business_hours(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    try:
        hours.parse(settings.SMSDESK_BUSINESS_HOURS, settings.SMSDESK_BUSINESS_TIME_ZONE)
    except hours.BadHours as exc:
        return [
            Error(
                f"SMSDESK_BUSINESS_HOURS or SMSDESK_BUSINESS_TIME_ZONE is not valid: {exc}.",
                hint='Write hours like "Mon-Fri 09:00-17:30; Sat 10:00-14:00" and a zone '
                'like "Europe/Amsterdam".',
                id="smsdesk.E005",
            )
        ]
    return []
