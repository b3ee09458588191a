"""WSGI entry point. Webhooks and /healthz skip Django's request cycle.

An inbound webhook costs a verify, a parse and one INSERT, yet Django's
request cycle (URL resolution, middleware, request signals, HttpResponse)
cost more CPU than all three. Views marked with
`smsdesk.sms.views.answered_by` are therefore called here straight from the
WSGI server: their `receive` function, the one the Django view wraps, gets a
WSGIRequest and returns an Answer, sent as Django would send it. What
Django's stack adds is added here too, so both answer, store and log alike
(tests/sms/test_webhook_fast_path.py, test_webhook_direct.py):

- the ALLOWED_HOSTS check (CommonMiddleware): a bad host goes to Django;
- the response headers of the remaining middleware, worked out once per
  settings by those middleware themselves;
- Django's own 500 for an unexpected error;
- the request signals' connection upkeep (close a broken or expired one).

Any setting this path does not mirror (another middleware, an SSL redirect,
PREPEND_WWW, DISALLOWED_USER_AGENTS) sends those views through the lean
path instead: Django's own handler with the same URL resolution, signals,
exception handling and response headers, but only the middleware a webhook
needs. Everything else goes through the full stack.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.client import responses
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.exception import convert_exception_to_response, response_for_exception
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest, get_path_info
from django.core.signals import setting_changed
from django.core.wsgi import get_wsgi_application
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import Resolver404, ResolverMatch, get_resolver
from django.utils.module_loading import import_string

# Django's imports above read no settings; get_wsgi_application() does.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smsdesk.settings")

StartResponse = Callable[..., Any]
Receive = Callable[..., Any]  # request, URL arguments → smsdesk.sms.views.Answer

# What a lean view does without: WhiteNoise answers /static/ only; sessions,
# users and messages are lazy but still cost a lookup and a response pass;
# lean views are csrf_exempt (a provider cannot hold a CSRF token).
LEAN_SKIPS = frozenset(
    {
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    }
)
# The middleware whose every effect on a webhook the direct path reproduces:
# SecurityMiddleware and XFrameOptionsMiddleware only add headers (given the
# guard in Edge.build); CommonMiddleware checks the host and adds Content-Length.
MIRRORED = (
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)
MATCH_KEY = "smsdesk.lean_match"


class LeanHandler(WSGIHandler):
    """Django's WSGI handler with a short middleware chain, for views marked lean."""

    def load_middleware(self, is_async: bool = False) -> None:
        handler = convert_exception_to_response(self.call_view)
        for path in reversed(settings.MIDDLEWARE):
            if path in LEAN_SKIPS:
                continue
            middleware = import_string(path)
            # This chain calls no view, template or exception hooks; a
            # middleware that has one must not be skipped over silently.
            for hook in ("process_view", "process_exception", "process_template_response"):
                if hasattr(middleware, hook):
                    raise ImproperlyConfigured(f"{path} has {hook}: add it to LEAN_SKIPS or not")
            handler = convert_exception_to_response(middleware(handler))
        self._middleware_chain = handler

    @staticmethod
    def call_view(request: HttpRequest) -> HttpResponseBase:
        match: ResolverMatch = request.META[MATCH_KEY]
        request.resolver_match = match
        response: HttpResponseBase = match.func(request, *match.args, **match.kwargs)
        return response


@functools.lru_cache(maxsize=256)
def resolve(urlconf: str, path_info: str) -> ResolverMatch | None:
    """The URL's match if its view is marked lean, else None (the full stack).

    Cached: resolving walks every URL pattern, which costs more than the rest
    of a /healthz. The cache is bounded, as paths come from the network.
    """
    try:
        match = get_resolver(urlconf).resolve(path_info)
    except Resolver404:
        return None
    return match if getattr(match.func, "lean", False) else None


def lean_match(environ: dict[str, Any]) -> ResolverMatch | None:
    return resolve(settings.ROOT_URLCONF, get_path_info(environ))


class Probe(HttpRequest):
    """A request that is or is not secure, to see which headers the middleware add."""

    def __init__(self, secure: bool):
        super().__init__()
        self.secure = secure

    def is_secure(self) -> bool:
        return self.secure


def unreachable(request: HttpRequest) -> HttpResponseBase:
    # Only the middleware's process_response is used here, never the chain.
    raise AssertionError("the direct path calls no view through the middleware")


@dataclass(frozen=True)
class Edge:
    """How a direct answer is made to look exactly like one from Django's stack."""

    middleware: tuple[Any, ...]  # instances, outermost first
    headers: tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]  # http, https

    @classmethod
    def build(cls) -> Edge | None:
        """The middleware and headers for the current settings; None where Django must answer."""
        kept = [path for path in settings.MIDDLEWARE if path not in LEAN_SKIPS]
        if (
            not set(kept) <= set(MIRRORED)
            or settings.SECURE_SSL_REDIRECT
            or settings.PREPEND_WWW
            or settings.DISALLOWED_USER_AGENTS
        ):
            return None
        middleware = tuple(import_string(path)(unreachable) for path in kept)
        edge = cls(middleware, ((), ()))
        headers = tuple(edge.template(secure) for secure in (False, True))
        return cls(middleware, (headers[0], headers[1]))

    def finish(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        """What the middleware do to a view's response on its way out."""
        for middleware in reversed(self.middleware):
            response = middleware.process_response(request, response)
        return response

    def template(self, secure: bool) -> tuple[tuple[str, str], ...]:
        # Every middleware kept adds the same headers to any plain-text
        # answer of a webhook (CommonMiddleware acts on 404s only, which a
        # webhook never gives); only HSTS depends on the request.
        response = self.finish(Probe(secure), HttpResponse(content_type="text/plain"))
        return tuple(response.items())


@functools.cache
def edge() -> Edge | None:
    return Edge.build()


def forget_edge(**kwargs: Any) -> None:
    edge.cache_clear()
    resolve.cache_clear()


setting_changed.connect(forget_edge)


class Body(list[bytes]):
    """An answer's body. A list, which granian sends in one write without iterating;
    close() for the WSGI servers and tests that call it (all work is done by then)."""

    def close(self) -> None:
        pass


def send_answer(
    start_response: StartResponse,
    request: WSGIRequest,
    edge: Edge,
    status: int,
    text: str,
    allow: str,
) -> Body:
    body = text.encode()
    headers = []
    for name, value in edge.headers[request.is_secure()]:
        if name == "Content-Length":
            value = str(len(body))
        headers.append((name, value))
        if name == "Content-Type" and allow:
            headers.append(("Allow", allow))
    start_response(f"{status} {responses[status]}", headers)
    return Body([body])


def send_response(
    start_response: StartResponse, request: WSGIRequest, edge: Edge, response: HttpResponse
) -> Body:
    response = edge.finish(request, response)
    start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
    return Body([response.content])


def upkeep(connection: BaseDatabaseWrapper) -> None:
    """The request signals' close_old_connections, for the one database a webhook uses.

    A connection that broke or outlived CONN_MAX_AGE is closed, as Django
    does at the start and end of each request. One in an atomic block is a
    test's (as with Django's test client, which disconnects the signals).
    """
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()


def direct(
    environ: dict[str, Any],
    start_response: StartResponse,
    match: ResolverMatch,
    receive: Receive,
    edge: Edge,
) -> Iterable[bytes]:
    request = WSGIRequest(environ)
    try:
        request.get_host()
    except Exception:  # noqa: BLE001 - DisallowedHost and the like: Django's own answer
        environ[MATCH_KEY] = match
        return lean_application(environ, start_response)
    request.resolver_match = match
    connection = connections[DEFAULT_DB_ALIAS]
    upkeep(connection)
    try:
        answer = receive(request, *match.args, **match.kwargs)
    except Exception as exc:  # noqa: BLE001 - answered as Django answers any view's error
        response = response_for_exception(request, exc)
        return send_response(start_response, request, edge, response)
    finally:
        upkeep(connection)
    return send_answer(start_response, request, edge, answer.status, answer.text, answer.allow)


django_application = get_wsgi_application()
lean_application = LeanHandler()


def answered_directly(environ: dict[str, Any]) -> bool:
    """Whether `application` answers this request without Django's request cycle.

    Such a request (a webhook, /healthz) uses no database connection of
    its own: a webhook's row goes through the journal's (smsdesk.sms.journal).
    """
    match = lean_match(environ)
    return match is not None and hasattr(match.func, "receive") and edge() is not None


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    match = lean_match(environ)
    if match is None:
        return django_application(environ, start_response)
    receive = getattr(match.func, "receive", None)  # see smsdesk.sms.views.answered_by
    if receive is not None and (found := edge()) is not None:
        return direct(environ, start_response, match, receive, found)
    environ[MATCH_KEY] = match
    return lean_application(environ, start_response)
