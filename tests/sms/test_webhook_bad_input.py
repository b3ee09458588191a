"""Malformed and hostile webhook requests: a clear 4xx, a warning, nothing stored, never a 500."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from urllib.parse import quote, urlencode

import pytest
from django.http import HttpResponse
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smsdesk.sms.models import InboundEvent

pytestmark = pytest.mark.django_db

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

Send = Callable[[Client], HttpResponse]


def form(body: str | bytes) -> Send:
    return lambda client: client.post("/webhook", body, content_type=FORM)


def fields(**values: str) -> Send:
    return form(urlencode(values))


def json_body(body: str | bytes) -> Send:
    return lambda client: client.post("/webhook", body, content_type=JSON)


def query(raw: str) -> Send:
    return lambda client: client.get(f"/webhook?{raw}")


OK_FIELDS = {"originator": "31612345678", "payload": "hi"}

# (case id, request, status, words the body must contain)
CASES: list[tuple[str, Send, int, str]] = [
    ("missing originator", fields(payload="hi"), 400, "missing originator"),
    ("empty originator", fields(originator="", payload="hi"), 400, "missing originator"),
    ("blank originator", fields(originator="   ", payload="hi"), 400, "missing originator"),
    ("missing text", fields(originator="31612345678"), 400, "missing message text"),
    (
        "blank text",
        fields(originator="31612345678", payload=" ", body=""),
        400,
        "missing message text",
    ),
    ("two-digit number", fields(originator="12", payload="hi"), 400, "bad originator"),
    ("forty digits", fields(originator="1" * 40, payload="hi"), 400, "bad originator"),
    ("letters in a number", fields(originator="+31abc!", payload="hi"), 400, "bad originator"),
    ("sql in originator", fields(originator="'; drop table", payload="hi"), 400, "bad originator"),
    ("one megabyte", form("originator=31612345678&payload=" + "a" * 1_000_000), 413, "bytes"),
    ("xml", lambda c: c.post("/webhook", "<sms/>", content_type="text/xml"), 415, "content type"),
    ("multipart", lambda c: c.post("/webhook", OK_FIELDS), 415, "content type"),
    ("no content type", lambda c: c.post("/webhook", "x=1", content_type=""), 415, "content type"),
    ("%ZZ in a form", form("originator=31612345678&payload=%ZZ"), 400, "percent-encoding"),
    ("lone % in a form", form("originator=31612345678&payload=100%"), 400, "percent-encoding"),
    ("%ZZ in a query", query("originator=31612345678&body=%ZZ"), 400, "percent-encoding"),
    ("lone % in a query", query("originator=31612345678&body=%"), 400, "percent-encoding"),
    ("bad utf-8 in a form", form("originator=31612345678&payload=%C3%28"), 400, "UTF-8"),
    ("bad utf-8 in a query", query("originator=31612345678&body=%C3%28"), 400, "UTF-8"),
    ("raw bytes in a form", form(b"originator=31612345678&payload=caf\xe9"), 400, "non-ASCII"),
    (
        "bad utf-8 in json",
        json_body(b'{"originator":"31612345678","payload":"\xc3\x28"}'),
        400,
        "UTF-8",
    ),
    ("json that does not parse", json_body('{"originator": '), 400, "does not parse"),
    ("json array", json_body('[{"originator":"31612345678","payload":"hi"}]'), 400, "object"),
    ("json string", json_body('"hi"'), 400, "object"),
    ("originator as object", json_body('{"originator":{"$ne":"x"},"payload":"hi"}'), 400, "string"),
    ("payload as list", json_body('{"originator":"31612345678","payload":["hi"]}'), 400, "string"),
    ("originator as bool", json_body('{"originator":true,"payload":"hi"}'), 400, "string"),
    ("operator injection", form("originator[$ne]=x&payload=hi"), 400, "missing originator"),
    ("text over 5000", fields(originator="31612345678", payload="x" * 5001), 400, "characters"),
    ("long message id", fields(**OK_FIELDS, id="x" * 129), 400, "message id"),
    ("long message_id", fields(**OK_FIELDS, message_id="x" * 129), 400, "message id"),
    (
        "conflicting duplicates",
        form("originator=31612345678&originator=31687654321&payload=hi"),
        400,
        "twice",
    ),
    ("NUL in a form text", fields(originator="31612345678", payload="hi\x00there"), 400, "NUL"),
    ("NUL in a form id", fields(**OK_FIELDS, id="a\x00b"), 400, "NUL"),
    (
        "NUL in a json text",
        json_body('{"originator":"31612345678","payload":"a\\u0000b"}'),
        400,
        "NUL",
    ),
    ("lone surrogate", json_body('{"originator":"31612345678","payload":"\\ud800"}'), 400, "UTF-8"),
    (
        "huge json number",
        json_body('{"originator":' + "9" * 5000 + ',"payload":"hi"}'),
        400,
        "JSON",
    ),
    ("deep json", json_body("[" * 30_000 + "]" * 30_000), 400, "JSON"),
    (
        "PUT",
        lambda c: c.put("/webhook", urlencode(OK_FIELDS), content_type=FORM),
        405,
        "GET or POST",
    ),
    ("DELETE", lambda c: c.delete("/webhook"), 405, "GET or POST"),
    (
        "PATCH",
        lambda c: c.patch("/webhook", urlencode(OK_FIELDS), content_type=FORM),
        405,
        "GET or POST",
    ),
]


@pytest.mark.parametrize(
    ("send", "status", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_it_refuses_bad_input_with_a_reason(
    client: Client, caplog: pytest.LogCaptureFixture, send: Send, status: int, reason: str
) -> None:
    response = send(client)

    assert response.status_code == status
    assert reason in response.content.decode()
    assert any(
        record.levelno == logging.WARNING and record.name == "smsdesk.sms.views"
        for record in caplog.records
    )
    assert not InboundEvent.objects.exists()


def test_a_refused_method_says_which_methods_are_allowed(client: Client) -> None:
    response = client.put("/webhook")

    assert response.status_code == 405
    assert response["Allow"] == "GET, POST"


def test_a_clean_request_beside_the_bad_ones_is_still_accepted(client: Client) -> None:
    # The negative cases above mean little if this one fails too.
    assert fields(**OK_FIELDS)(client).status_code == 200
    assert InboundEvent.objects.count() == 1


def test_a_text_of_exactly_5000_characters_is_accepted(client: Client) -> None:
    response = fields(originator="31612345678", payload="x" * 5000, id="long")(client)

    assert response.status_code == 200
    assert len(InboundEvent.objects.get().text) == 5000


def test_repeated_identical_fields_are_harmless(client: Client) -> None:
    response = form("originator=31612345678&originator=31612345678&payload=hi")(client)

    assert response.status_code == 200


# Property tests: whatever arrives, the answer is never a 500. The Django test
# client re-raises a view's exception, so a crash fails the test by itself.

FUZZ = settings(
    max_examples=150,
    deadline=None,  # no wall-clock limits in tests
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def assert_handled(response: HttpResponse) -> None:
    assert response.status_code in (200, 400, 413, 415)


@FUZZ
@given(body=st.binary(max_size=300))
def test_random_bytes_as_a_form_body_never_crash(client: Client, body: bytes) -> None:
    assert_handled(client.post("/webhook", body, content_type=FORM))


@FUZZ
@given(body=st.binary(max_size=300))
def test_random_bytes_as_a_json_body_never_crash(client: Client, body: bytes) -> None:
    assert_handled(client.post("/webhook", body, content_type=JSON))


@FUZZ
@given(tail=st.text(st.characters(max_codepoint=127), max_size=200))
def test_random_ascii_after_valid_fields_never_crashes(client: Client, tail: str) -> None:
    # ASCII gets past the first checks, so the parser and the database see it.
    body = "originator=31612345678&id=fuzz&payload=" + tail
    assert_handled(client.post("/webhook", body, content_type=FORM))


@FUZZ
@given(text=st.text(max_size=200), originator=st.text(max_size=30))
def test_any_percent_encoded_text_never_crashes(client: Client, text: str, originator: str) -> None:
    body = f"originator={quote(originator, errors='surrogatepass')}&payload={quote(text, errors='surrogatepass')}"
    assert_handled(client.post("/webhook", body, content_type=FORM))


@FUZZ
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=5), children, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_any_json_value_in_any_field_never_crashes(client: Client, value: object) -> None:
    data = {
        "originator": value,
        "payload": value,
        "recipient": value,
        "id": value,
        "currentTime": value,
    }
    assert_handled(client.post("/webhook", json.dumps(data), content_type=JSON))
