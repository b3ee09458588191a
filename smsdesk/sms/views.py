"""Webhooks: verify, parse, store, answer. Threading into tickets is the worker's job."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from . import providers
from .models import InboundEvent
from .providers import WebhookRejected

log = logging.getLogger(__name__)


ALLOWED_METHODS = ("GET", "POST")

View = TypeVar("View", bound=Callable[..., HttpResponse])


def lean(view: View) -> View:
    """Mark a view that needs no session, user, CSRF or messages: see smsdesk.wsgi."""
    view.lean = True  # type: ignore[attr-defined]
    return view


@lean
def healthz(request: HttpRequest) -> HttpResponse:
    """A trivial answer with no database: the server's ceiling in the benchmarks."""
    return HttpResponse("ok", content_type="text/plain")


@lean
@csrf_exempt
def messagebird_inbound(request: HttpRequest, token: str | None = None) -> HttpResponse:
    provider = providers.get("messagebird")
    try:
        check_method(request)
        check_size(request)
        authenticate(request, provider, token)
        sms = provider.parse_inbound(request)
    except WebhookRejected as exc:
        path = masked_path(request, token)
        log.warning("webhook %s %s rejected (%s): %s", request.method, path, exc.status, exc.reason)
        response = HttpResponse(exc.reason + "\n", status=exc.status, content_type="text/plain")
        if exc.status == 405:
            response["Allow"] = ", ".join(ALLOWED_METHODS)
        return response
    InboundEvent.record(provider.name, sms, raw_request(request, token))
    # MessageBird does not read the answer; the sample sends "OK".
    return HttpResponse("OK", content_type="text/plain")


def check_method(request: HttpRequest) -> None:
    # Checked here rather than by require_http_methods, whose 405 has an empty
    # body and a log line that the settings silence (django.request is at ERROR).
    if request.method not in ALLOWED_METHODS:
        raise WebhookRejected(405, f"method {request.method} not allowed: send GET or POST")


def check_size(request: HttpRequest) -> None:
    limit = settings.SMSDESK_WEBHOOK_MAX_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError as exc:
        raise WebhookRejected(400, "bad Content-Length") from exc
    if declared > limit or len(request.META.get("QUERY_STRING", "")) > limit:
        raise WebhookRejected(413, f"request over {limit} bytes; an SMS webhook is far smaller")


def authenticate(request: HttpRequest, provider: providers.Provider, token: str | None) -> None:
    """Accept a valid signature, or the secret URL token; unsigned only outside production."""
    expected_token = settings.SMSDESK_WEBHOOK_TOKEN
    token_ok = bool(token and expected_token and hmac.compare_digest(token, expected_token))
    if token is not None and not token_ok:
        raise WebhookRejected(401, "unknown webhook token")
    signed = "MessageBird-Signature-JWT" in request.headers
    if settings.MESSAGEBIRD_SIGNING_KEY and (signed or not token_ok):
        provider.verify(request)
    elif expected_token and not token_ok:
        raise WebhookRejected(401, "this desk takes webhooks only at its secret token URL")
    elif not token_ok and settings.PRODUCTION:
        raise WebhookRejected(401, "unsigned webhooks are refused in production")


def masked_path(request: HttpRequest, token: str | None) -> str:
    # The secret URL token must end up neither in the journal nor in the logs.
    return request.path.replace(token, "{token}") if token else request.path


def raw_request(request: HttpRequest, token: str | None = None) -> dict[str, object]:
    return {
        "method": request.method,
        "path": masked_path(request, token),
        "query": request.META.get("QUERY_STRING", ""),
        "content_type": request.content_type,
        "body": request.body.decode("utf-8", errors="replace"),
    }
