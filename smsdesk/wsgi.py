"""WSGI entry point. Webhooks and /healthz skip the middleware they never use.

A webhook needs no session, user, CSRF check, flash messages or static
files, yet Django's full stack does that work on every request. Views marked
`lean` (see smsdesk.sms.views) run through Django's own handler with the
same URL resolution, signals, exception handling and response headers, but
only the middleware they need. Everything else goes through the full stack.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler, get_path_info
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponseBase
from django.urls import Resolver404, ResolverMatch, get_resolver
from django.utils.module_loading import import_string

# Django's imports above read no settings; get_wsgi_application() does.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smsdesk.settings")

StartResponse = Callable[..., Any]

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


def lean_match(environ: dict[str, Any]) -> ResolverMatch | None:
    """The URL's match if its view is marked lean, else None (the full stack)."""
    try:
        match = get_resolver().resolve(get_path_info(environ))
    except Resolver404:
        return None
    return match if getattr(match.func, "lean", False) else None


django_application = get_wsgi_application()
lean_application = LeanHandler()


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    match = lean_match(environ)
    if match is None:
        return django_application(environ, start_response)
    environ[MATCH_KEY] = match
    return lean_application(environ, start_response)
