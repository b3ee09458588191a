"""The direct webhook path (smsdesk.wsgi) skips Django's request cycle and still answers alike.

tests/sms/test_webhook_fast_path.py compares the two paths request by
request; these cases cover what the direct path has to reproduce by itself:
settings-dependent headers, Django's answers to a bad host and to a crash,
the connection upkeep of the request signals, and the journal row it writes
without the ORM.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_started
from django.db import OperationalError, connection, transaction
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from smsdesk import wsgi
from smsdesk.sms.models import InboundEvent, work_available
from smsdesk.sms.providers import InboundSms
from tests.sms.signing import SIGNING_KEY, signature
from tests.sms.test_webhook_fast_path import FORM, FORM_TYPE, both_ways, call, stored

pytestmark = pytest.mark.django_db

MakeRequest = Callable[[], Any]


@pytest.fixture
def signed(settings: Any) -> None:
    settings.MESSAGEBIRD_SIGNING_KEY = SIGNING_KEY


def signed_post(path: str = "/webhook", secure: bool = False) -> MakeRequest:
    scheme = "https" if secure else "http"
    token = signature(f"{scheme}://testserver{path}", FORM)
    return lambda: RequestFactory().post(
        path,
        FORM,
        content_type=FORM_TYPE,
        secure=secure,
        headers={"MessageBird-Signature-JWT": token},
    )


def full_and_direct(make: MakeRequest, caplog: pytest.LogCaptureFixture) -> tuple[Any, Any]:
    """As both_ways, with Django's full stack built for the current settings,
    as a server started with them would be."""
    return both_ways(make, caplog, full=WSGIHandler())


@contextmanager
def request_cycles() -> Iterator[list[object]]:
    """Every request_started signal sent meanwhile: Django's request cycle at work."""
    seen: list[object] = []

    def started(sender: object, **kwargs: object) -> None:
        seen.append(sender)

    request_started.connect(started)
    try:
        yield seen
    finally:
        request_started.disconnect(started)


# The route


def test_a_webhook_skips_djangos_request_cycle(signed: None) -> None:
    with request_cycles() as cycles:
        assert call(wsgi.application, signed_post()())[0] == 200
        assert call(wsgi.application, RequestFactory().get("/healthz"))[0] == 200
    assert cycles == []
    assert len(stored()) == 1


def test_other_pages_still_go_through_djangos_request_cycle() -> None:
    with request_cycles() as cycles:
        assert call(wsgi.application, RequestFactory().get("/login/"))[0] == 200
    assert len(cycles) == 1


UNMIRRORED: dict[str, Callable[[Any], None]] = {
    "ssl-redirect": lambda settings: setattr(settings, "SECURE_SSL_REDIRECT", True),
    "prepend-www": lambda settings: setattr(settings, "PREPEND_WWW", True),
    "user-agents": lambda settings: setattr(
        settings, "DISALLOWED_USER_AGENTS", [re.compile("curl")]
    ),
    "other-middleware": lambda settings: setattr(
        settings, "MIDDLEWARE", [*settings.MIDDLEWARE, "django.middleware.gzip.GZipMiddleware"]
    ),
}


@pytest.mark.parametrize("change", UNMIRRORED.values(), ids=UNMIRRORED.keys())
def test_settings_the_direct_path_does_not_mirror_send_webhooks_through_django(
    settings: Any, change: Callable[[Any], None]
) -> None:
    assert wsgi.edge() is not None
    change(settings)
    assert wsgi.edge() is None


def test_without_the_direct_path_a_webhook_still_takes_the_lean_django_path(
    signed: None, settings: Any
) -> None:
    settings.DISALLOWED_USER_AGENTS = [re.compile("nobody-sends-this")]
    with request_cycles() as cycles:
        status, _, body = call(wsgi.application, signed_post()())
    assert (status, body) == (200, b"OK")
    assert len(cycles) == 1
    assert len(stored()) == 1


# What Django's stack adds, reproduced


def test_it_sends_hsts_over_https_exactly_as_the_full_stack_does(
    signed: None, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    full, direct = full_and_direct(signed_post(secure=True), caplog)
    assert full == direct
    (status, headers, _), rows, _ = direct
    assert status == 200 and len(rows) == 1
    assert headers["Strict-Transport-Security"] == "max-age=3600; includeSubDomains"
    # Over plain HTTP there is none, as with Django.
    plain = call(wsgi.application, signed_post()())
    assert "Strict-Transport-Security" not in plain[1]


def test_it_sends_the_headers_the_settings_ask_for_exactly_as_the_full_stack_does(
    signed: None, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.X_FRAME_OPTIONS = "SAMEORIGIN"
    settings.SECURE_REFERRER_POLICY = ["no-referrer", "strict-origin"]
    settings.SECURE_CROSS_ORIGIN_OPENER_POLICY = None
    full, direct = full_and_direct(signed_post(), caplog)
    assert full == direct
    headers = direct[0][1]
    assert headers["X-Frame-Options"] == "SAMEORIGIN"
    assert headers["Referrer-Policy"] == "no-referrer,strict-origin"
    assert "Cross-Origin-Opener-Policy" not in headers


def test_a_refused_method_gets_the_same_allow_header_as_from_the_full_stack(
    caplog: pytest.LogCaptureFixture,
) -> None:
    make = lambda: RequestFactory().delete("/webhooks/messagebird")  # noqa: E731
    full, direct = full_and_direct(make, caplog)
    assert full == direct
    assert direct[0][0] == 405 and direct[0][1]["Allow"] == "GET, POST"


def test_a_host_not_allowed_gets_djangos_own_400(
    signed: None, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.ALLOWED_HOSTS = ["desk.example.com"]
    full, direct = full_and_direct(signed_post(), caplog)
    assert full == direct
    (status, _, _), rows, logs = direct
    assert status == 400 and rows == []
    assert any(name == "django.security.DisallowedHost" for name, _, _ in logs)


def test_a_database_error_is_answered_500_exactly_as_by_the_full_stack(
    signed: None, caplog: pytest.LogCaptureFixture
) -> None:
    def database_down(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if "INSERT" in sql:
            raise OperationalError("the database is down")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(database_down):
        full, direct = full_and_direct(signed_post(), caplog)
    assert full == direct
    (status, _, _), rows, logs = direct
    # A 500 makes MessageBird deliver the text again later.
    assert status == 500 and rows == []
    assert any(level == logging.ERROR and name == "django.request" for name, level, _ in logs)


# Connection upkeep, as the request signals do it


@pytest.mark.django_db(transaction=True)
def test_a_connection_past_its_max_age_is_replaced_as_django_would(signed: None) -> None:
    connection.ensure_connection()
    old = connection.connection
    connection.close_at = time.monotonic() - 1

    assert call(wsgi.application, signed_post()())[0] == 200

    assert connection.connection is not old
    assert InboundEvent.objects.count() == 1


# The journal row, written without the ORM


def inbound(key: str) -> InboundSms:
    return InboundSms(
        sender="+31612345678",
        recipient="+3197010254321",
        text="Wáár is mijn pakket? 📦",
        key=key,
        sent_at=timezone.now().replace(microsecond=123456),
    )


RAW = {"method": "POST", "path": "/webhook", "query": "", "body": "a=1&b=%C3%A9"}


def stored_columns(key: str) -> tuple[object, ...]:
    """The row as the database holds it, every column but the id and the key."""
    columns = ", ".join(
        connection.ops.quote_name(name) for name in InboundEvent.INSERT_FIELDS if name != "key"
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM sms_inboundevent WHERE key = %s", [key])
        row = cursor.fetchone()
    assert row is not None
    return tuple(row)


def test_record_fills_every_column_but_the_id() -> None:
    fields = [f.name for f in InboundEvent._meta.concrete_fields if not f.primary_key]
    assert list(InboundEvent.INSERT_FIELDS) == fields


def test_record_stores_the_row_the_orm_would_store() -> None:
    sms = inbound("by-record")
    InboundEvent.record("messagebird", sms, RAW)
    orm = InboundEvent.objects.create(
        provider="messagebird",
        key="by-orm",
        sender=sms.sender,
        recipient=sms.recipient,
        text=sms.text,
        sent_at=sms.sent_at,
        raw=RAW,
    )

    by_record, by_orm = stored_columns("by-record"), stored_columns("by-orm")
    received = InboundEvent.INSERT_FIELDS.index("received_at") - 1
    assert by_record[:received] + by_record[received + 1 :] == (
        by_orm[:received] + by_orm[received + 1 :]
    )
    # Stored alike, and read back as the same kind of value.
    assert type(by_record[received]) is type(by_orm[received])
    event = InboundEvent.objects.get(key="by-record")
    assert abs(event.received_at - orm.received_at).total_seconds() < 60
    assert (event.sent_at, event.raw, event.text) == (sms.sent_at, RAW, sms.text)


def test_the_driver_cursor_and_djangos_cursor_store_the_same_row() -> None:
    InboundEvent.record("messagebird", inbound("driver"), RAW)
    with CaptureQueriesContext(connection) as queries:
        InboundEvent.record("messagebird", inbound("django"), RAW)
    assert len(queries) == 1  # seen: Django's cursor ran it

    by_driver, by_django = stored_columns("driver"), stored_columns("django")
    received = InboundEvent.INSERT_FIELDS.index("received_at") - 1
    assert by_driver[:received] == by_django[:received]
    assert by_driver[received + 1 :] == by_django[received + 1 :]


def test_a_duplicate_key_stores_nothing_more() -> None:
    InboundEvent.record("messagebird", inbound("twice"), RAW)
    InboundEvent.record("messagebird", inbound("twice"), {"other": "request"})
    assert InboundEvent.objects.get(key="twice").raw == RAW


def test_record_takes_part_in_the_callers_transaction() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        InboundEvent.record("messagebird", inbound("rolled-back"), RAW)
        assert InboundEvent.objects.filter(key="rolled-back").exists()
        raise RuntimeError("the caller's transaction fails")
    assert not InboundEvent.objects.filter(key="rolled-back").exists()


def test_the_worker_is_woken_only_once_the_row_is_committed(
    django_capture_on_commit_callbacks: Any,
) -> None:
    work_available.clear()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        InboundEvent.record("messagebird", inbound("wake"), RAW)
        assert not work_available.is_set()
    assert len(callbacks) == 1
    assert work_available.is_set()
