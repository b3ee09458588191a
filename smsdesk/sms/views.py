"""Webhooks: verify, parse, store, answer. Threading into tickets is the worker's job.

`receive_inbound` is the inbound webhook, whole: the Django view below wraps
it in an HttpResponse, and smsdesk.wsgi calls it straight from the WSGI
server without Django's request cycle. Both answer, store and log the same.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from . import providers
from .models import InboundEvent
from .providers import WebhookRejected
from .providers.messagebird import SIGNATURE_META

log = logging.getLogger(__name__)


ALLOWED_METHODS = ("GET", "POST")

View = TypeVar("View", bound=Callable[..., HttpResponse])


def lean(view: View) -> View:
    """Mark a view that needs no session, user, CSRF or messages: see smsdesk.wsgi."""
    view.lean = True  # type: ignore[attr-defined]
    return view


def answered_by(receive: Callable[..., Answer]) -> Callable[[View], View]:
    """Mark a lean view that only wraps `receive`, which smsdesk.wsgi then calls directly."""

    def mark(view: View) -> View:
        view.receive = receive  # type: ignore[attr-defined]
        return lean(view)

    return mark


@dataclass(frozen=True)
class Answer:
    """A webhook's answer: a status and a short plain-text body."""

    status: int
    text: str
    allow: str = ""  # the Allow header of a 405

    def response(self) -> HttpResponse:
        response = HttpResponse(self.text, status=self.status, content_type="text/plain")
        if self.allow:
            response["Allow"] = self.allow
        return response


# MessageBird does not read the answer; the sample sends "OK".
ACCEPTED = Answer(200, "OK")


def alive(request: HttpRequest) -> Answer:
    """A trivial answer with no database: the server's ceiling in the benchmarks."""
    return Answer(200, "ok")


@answered_by(alive)
def healthz(request: HttpRequest) -> HttpResponse:
    return alive(request).response()


@functools.cache
def messagebird() -> providers.Provider:
    """The adapter, made once: from_settings reads five settings, each costing a lookup."""
    return providers.get("messagebird")


def forget_provider(**kwargs: object) -> None:
    messagebird.cache_clear()


setting_changed.connect(forget_provider)


def receive_inbound(request: HttpRequest, token: str | None = None) -> Answer:
    """Verify, parse and journal one MessageBird webhook; the answer says how it went.

    Unexpected errors (a database that is down) propagate: the caller turns
    them into a 500, which the provider retries.
    """
    provider = messagebird()
    try:
        admit(request, provider, token)
        sms = provider.parse_inbound(request)
    except WebhookRejected as exc:
        return rejected(request, token, exc)
    InboundEvent.record(provider.name, sms, raw_request(request, token))
    return ACCEPTED


def rejected(request: HttpRequest, token: str | None, exc: WebhookRejected) -> Answer:
    """A refused webhook's answer, and its log line (the URL token masked)."""
    path = masked_path(request, token)
    log.warning("webhook %s %s rejected (%s): %s", request.method, path, exc.status, exc.reason)
    allow = ", ".join(ALLOWED_METHODS) if exc.status == 405 else ""
    return Answer(exc.status, exc.reason + "\n", allow)


@answered_by(receive_inbound)
@csrf_exempt
def messagebird_inbound(request: HttpRequest, token: str | None = None) -> HttpResponse:
    return receive_inbound(request, token).response()


def admit(request: HttpRequest, provider: providers.Provider, token: str | None) -> None:
    """Every webhook's checks before parsing: method, size, signature or token."""
    check_method(request)
    check_size(request)
    authenticate(request, provider, token)


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
    signed = SIGNATURE_META in request.META
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
