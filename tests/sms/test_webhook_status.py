"""MessageBird's delivery reports at /webhooks/messagebird/status: GET and POST, signed."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client

from smsdesk.desk.models import Message
from tests.sms.signing import SIGNING_KEY, signature

pytestmark = pytest.mark.django_db

PATH = "/webhooks/messagebird/status"


@pytest.fixture
def signed(settings: Any) -> None:
    settings.MESSAGEBIRD_SIGNING_KEY = SIGNING_KEY


def report(
    message: Message, status: str, at: str = "2026-12-01T10:00:00+00:00", **extra: str
) -> dict[str, str]:
    return {
        "id": message.provider_message_id,
        "reference": str(message.uuid),
        "recipient": "31612345678",
        "status": status,
        "statusDatetime": at,
        "mccmnc": "20408",
        "ported": "0",
        **extra,
    }


def get_signed(client: Client, fields: dict[str, str], path: str = PATH) -> Any:
    query = urlencode(fields)
    url = f"http://testserver{path}?{query}"
    return client.get(f"{path}?{query}", headers={"MessageBird-Signature-JWT": signature(url)})


def status(message: Message) -> str:
    message.refresh_from_db()
    return message.status


@pytest.mark.usefixtures("signed")
def test_a_signed_get_report_moves_the_message_forward(client: Client, sent: Message) -> None:
    response = get_signed(client, report(sent, "delivered", statusReason="successfully delivered"))
    assert (response.status_code, response.content) == (200, b"OK")
    sent.refresh_from_db()
    assert (sent.status, sent.status_reason) == ("delivered", "successfully delivered")
    assert sent.status_at is not None and sent.status_at.isoformat() == "2026-12-01T10:00:00+00:00"


@pytest.mark.usefixtures("signed")
def test_reports_out_of_order_and_twice_never_move_it_back(client: Client, sent: Message) -> None:
    for fields in [
        report(sent, "delivered", "2026-12-01T10:02:00+00:00"),
        report(sent, "buffered", "2026-12-01T10:01:00+00:00"),
        report(sent, "sent", "2026-12-01T10:00:00+00:00"),
        report(sent, "delivered", "2026-12-01T10:02:00+00:00"),
        report(sent, "delivery_failed", "2026-12-01T10:03:00+00:00"),
    ]:
        assert get_signed(client, fields).status_code == 200
    sent.refresh_from_db()
    assert (sent.status, sent.status_at.minute if sent.status_at else None) == ("delivered", 2)
    assert Message.objects.count() == 1


@pytest.mark.usefixtures("signed")
def test_a_posted_form_report_works_too(client: Client, sent: Message) -> None:
    body = urlencode(
        report(sent, "delivery_failed", statusErrorCode="104", statusReason="unknown subscriber")
    )
    response = client.post(
        PATH,
        body,
        content_type="application/x-www-form-urlencoded",
        headers={"MessageBird-Signature-JWT": signature(f"http://testserver{PATH}", body)},
    )
    assert response.status_code == 200
    sent.refresh_from_db()
    assert (sent.status, sent.status_error_code, sent.status_reason) == (
        "failed",
        "104",
        "unknown subscriber",
    )


@pytest.mark.usefixtures("signed")
def test_an_unknown_message_is_answered_200_and_changes_nothing(
    client: Client, sent: Message
) -> None:
    fields = report(sent, "delivered", id="someone-elses", reference="not-ours")
    assert get_signed(client, fields).status_code == 200
    assert status(sent) == "sent"


@pytest.mark.usefixtures("signed")
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": "teleported"}, "unknown or missing status"),
        ({"status": ""}, "unknown or missing status"),
        ({"id": "", "reference": ""}, "needs an id or a reference"),
        ({"statusDatetime": "yesterday"}, "is not a time"),
        ({"statusDatetime": "2026-12-01T10:00:00"}, "no time zone offset"),
        ({"reference": "x" * 200}, "over 128 characters"),
    ],
)
def test_a_malformed_report_gets_a_400_and_a_log_line(
    client: Client,
    sent: Message,
    change: dict[str, str],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fields = {**report(sent, "delivered"), **change}
    with caplog.at_level(logging.WARNING):
        response = get_signed(client, fields)
    assert response.status_code == 400
    assert reason in response.content.decode()
    assert any(reason in record.getMessage() for record in caplog.records)
    assert status(sent) == "sent"


@pytest.mark.usefixtures("signed")
def test_an_unsigned_or_badly_signed_report_is_refused(client: Client, sent: Message) -> None:
    query = urlencode(report(sent, "delivered"))
    assert client.get(f"{PATH}?{query}").status_code == 401
    forged = signature(
        f"http://testserver{PATH}?{query}", key="not the signing key, though long enough"
    )
    assert (
        client.get(f"{PATH}?{query}", headers={"MessageBird-Signature-JWT": forged}).status_code
        == 401
    )
    assert status(sent) == "sent"


def test_the_secret_token_url_works_for_reports(
    client: Client, sent: Message, settings: Any
) -> None:
    settings.SMSDESK_WEBHOOK_TOKEN = "t" * 40
    query = urlencode(report(sent, "delivered"))
    assert client.get(f"{PATH}/{'t' * 40}?{query}").status_code == 200
    assert status(sent) == "delivered"
    assert client.get(f"{PATH}/wrong?{query}").status_code == 401


def test_reports_take_only_get_and_post(client: Client, sent: Message) -> None:
    response = client.put(PATH)
    assert response.status_code == 405 and response["Allow"] == "GET, POST"
