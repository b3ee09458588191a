"""The lean webhook path (smsdesk.wsgi) answers exactly as Django's full stack does.

Each case sends the same request through both WSGI applications, the full
one and the lean one, and compares status, headers, body, stored rows and
log lines. Other URLs must still get sessions and CSRF.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import RequestFactory

from smsdesk import wsgi
from smsdesk.sms.models import InboundEvent
from tests.sms.signing import SIGNING_KEY, signature

pytestmark = pytest.mark.django_db

TOKEN = "7Qm1c0x9kZ4dR2vW8pLs"
FORM = (
    "originator=31612345678&recipient=%2B3197010254321&payload=Where+is+my+order%3F"
    "&body=Where+is+my+order%3F&incomingMessage=Where+is+my+order%3F&message_id=fast-1"
    "&currentTime=2026-10-05T14%3A03%3A11%2B02%3A00"
)
FORM_TYPE = "application/x-www-form-urlencoded"

Answer = tuple[int, dict[str, str], bytes]
MakeRequest = Callable[[], Any]


@contextmanager
def as_a_server_would() -> Iterator[None]:
    # As Django's test client does: the test's transaction must survive the
    # connection handling that the request signals do in a real server.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def call(app: Callable[..., Any], request: Any) -> Answer:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = status, headers

    with as_a_server_would():
        result = app(request.environ, start_response)
        try:
            body = b"".join(result)
        finally:
            result.close()
    return int(seen["status"].split()[0]), dict(seen["headers"]), body


def stored() -> list[tuple[object, ...]]:
    return list(
        InboundEvent.objects.order_by("id").values_list(
            "provider", "key", "sender", "recipient", "text", "sent_at", "raw", "error"
        )
    )


def both_ways(
    make: MakeRequest, caplog: pytest.LogCaptureFixture, full: Any = None
) -> tuple[Any, Any]:
    """The answer, rows and log lines of the full stack (`full`, by default
    Django's as smsdesk.wsgi built it), then of the lean path."""
    outcomes = []
    for app in (full or wsgi.django_application, wsgi.application):
        InboundEvent.objects.all().delete()
        caplog.clear()
        with caplog.at_level(logging.INFO):
            answer = call(app, make())
        logs = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
        outcomes.append((answer, stored(), logs))
    return outcomes[0], outcomes[1]


@pytest.fixture
def signed(settings: Any) -> None:
    settings.MESSAGEBIRD_SIGNING_KEY = SIGNING_KEY


def signed_post(path: str = "/webhook", body: str = FORM, **claims: Any) -> MakeRequest:
    token = signature(f"http://testserver{path}", body, **claims)
    return lambda: RequestFactory().post(
        path, body, content_type=FORM_TYPE, headers={"MessageBird-Signature-JWT": token}
    )


def test_it_routes_webhooks_and_healthz_to_the_lean_path_only() -> None:
    for path in ("/webhook", "/webhook/abc", "/webhooks/messagebird", "/healthz"):
        assert wsgi.lean_match({"PATH_INFO": path}) is not None, path
    for path in ("/", "/login/", "/admin/", "/simulator/", "/static/x.css", "/webhook/", "/nope"):
        assert wsgi.lean_match({"PATH_INFO": path}) is None, path


def test_it_stores_a_signed_webhook_exactly_as_the_full_stack_does(
    signed: None, caplog: pytest.LogCaptureFixture
) -> None:
    full, lean = both_ways(signed_post(), caplog)
    assert full == lean
    (status, headers, body), rows, _ = lean
    assert (status, body) == (200, b"OK")
    assert headers["X-Frame-Options"] == "DENY"
    assert "Set-Cookie" not in headers
    assert len(rows) == 1 and rows[0][1] == "fast-1"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(signed_post(payload_hash="0" * 64), id="bad-payload-hash"),
        pytest.param(signed_post(iss="Someone"), id="wrong-issuer"),
        pytest.param(
            lambda: RequestFactory().post("/webhook", FORM, content_type=FORM_TYPE),
            id="unsigned",
        ),
        pytest.param(
            lambda: RequestFactory().put("/webhook", FORM, content_type=FORM_TYPE),
            id="wrong-method",
        ),
        pytest.param(signed_post(body="originator=%ZZ&payload=x"), id="broken-form"),
        pytest.param(signed_post(body="payload=hello"), id="no-originator"),
        pytest.param(
            lambda: RequestFactory().post("/webhook/wrong-token", FORM, content_type=FORM_TYPE),
            id="unknown-token",
        ),
    ],
)
def test_it_refuses_bad_requests_exactly_as_the_full_stack_does(
    signed: None, make: MakeRequest, caplog: pytest.LogCaptureFixture, settings: Any
) -> None:
    settings.SMSDESK_WEBHOOK_TOKEN = TOKEN
    full, lean = both_ways(make, caplog)
    assert full == lean
    (status, headers, body), rows, logs = lean
    assert status in (400, 401, 405) and rows == []
    assert any(level == logging.WARNING and "rejected" in message for _, level, message in logs)


def test_it_takes_the_secret_token_url_exactly_as_the_full_stack_does(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.SMSDESK_WEBHOOK_TOKEN = TOKEN
    make = lambda: RequestFactory().get(f"/webhook/{TOKEN}?originator=31612345678&body=Hi&id=t-1")  # noqa: E731
    full, lean = both_ways(make, caplog)
    assert full == lean
    assert lean[0][:1] == (200,)
    assert TOKEN not in str(lean[1])


def test_a_redelivery_on_the_lean_path_stores_nothing_more(signed: None) -> None:
    make = signed_post()
    assert call(wsgi.application, make())[0] == 200
    assert call(wsgi.application, make())[0] == 200
    assert len(stored()) == 1


def test_healthz_answers_ok_without_the_database(django_assert_num_queries: Any) -> None:
    full = call(wsgi.django_application, RequestFactory().get("/healthz"))
    with django_assert_num_queries(0):
        lean = call(wsgi.application, RequestFactory().get("/healthz"))
    assert full == lean
    status, headers, body = lean
    assert (status, body, headers["Content-Type"]) == (200, b"ok", "text/plain")


def test_a_webhook_costs_one_query(signed: None, django_assert_num_queries: Any) -> None:
    make = signed_post()
    with django_assert_num_queries(1):
        assert call(wsgi.application, make())[0] == 200


def test_other_pages_still_get_sessions_and_csrf() -> None:
    status, headers, body = call(wsgi.application, RequestFactory().get("/login/"))
    assert status == 200
    assert "csrftoken=" in headers.get("Set-Cookie", "")
    assert "Cookie" in headers.get("Vary", "")
    refused = RequestFactory().post("/login/", {"username": "admin", "password": "x"})
    refused._dont_enforce_csrf_checks = False
    assert call(wsgi.application, refused)[0] == 403
