from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def desk(request: HttpRequest) -> dict[str, object]:
    return {"simulator_enabled": settings.SMSDESK_PROVIDER == "simulator"}
