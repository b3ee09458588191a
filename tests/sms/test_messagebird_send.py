"""MessageBird's REST send API, spoken to a real local fake server (providers.md §5)."""

from __future__ import annotations

from typing import Any

import pytest

from smsdesk.sms.providers import OutboundSms, ProviderError
from smsdesk.sms.providers.messagebird import MessageBird
from tests.fakes import (  # noqa: F401
    ACCESS_KEY,
    ORIGINATOR,
    FakeMessageBird,
    fake_messagebird_fixture,
    short_timeout_fixture,
)

SMS = OutboundSms(to="+31612345678", body="Your ticket ID is 7QM2KD. Café ☕", reference="0f4c")


def send(sms: OutboundSms = SMS) -> str:
    return MessageBird.from_settings().send(sms)


def refusal() -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        send()
    return caught.value


def test_it_posts_the_message_as_json_with_the_access_key(
    fake_messagebird: FakeMessageBird,
) -> None:
    send()
    (request,) = fake_messagebird.requests
    assert (request.method, request.path) == ("POST", "/messages")
    assert request.headers["authorization"] == f"AccessKey {ACCESS_KEY}"
    assert request.headers["content-type"].startswith("application/json")
    assert request.json == {
        "originator": ORIGINATOR,
        "recipients": ["+31612345678"],
        "body": "Your ticket ID is 7QM2KD. Café ☕",
        # "plain" would make MessageBird replace the é and the emoji.
        "datacoding": "auto",
        "reference": "0f4c",
    }


def test_it_asks_for_delivery_reports_at_the_public_url(
    fake_messagebird: FakeMessageBird, settings: Any
) -> None:
    settings.SMSDESK_PUBLIC_URL = "https://desk.example.com"
    send()
    (request,) = fake_messagebird.requests
    assert request.json["reportUrl"] == "https://desk.example.com/webhooks/messagebird/status"
    assert request.json["reference"] == "0f4c"


def test_it_returns_the_id_messagebird_gave_the_message(fake_messagebird: FakeMessageBird) -> None:
    provider_id = send()
    (request,) = fake_messagebird.requests
    assert request.answer_status == 201
    assert provider_id == request.answer_body["id"]


def test_it_fails_for_good_on_a_wrong_access_key(fake_messagebird: FakeMessageBird) -> None:
    fake_messagebird.respond(
        401,
        {
            "errors": [
                {
                    "code": 2,
                    "description": "Request not allowed (incorrect access_key)",
                    "parameter": "access_key",
                }
            ]
        },
    )
    error = refusal()
    assert error.permanent
    assert "Request not allowed (incorrect access_key)" in str(error)
    assert "401" in str(error)


def test_it_fails_for_good_on_a_bad_recipient(fake_messagebird: FakeMessageBird) -> None:
    fake_messagebird.respond(
        422,
        {
            "errors": [
                {
                    "code": 10,
                    "description": "no (correct) recipients found",
                    "parameter": "recipient",
                }
            ]
        },
    )
    error = refusal()
    assert error.permanent
    assert "no (correct) recipients found" in str(error)


def test_it_names_the_error_code_when_messagebird_gives_no_description(
    fake_messagebird: FakeMessageBird,
) -> None:
    fake_messagebird.respond(422, {"errors": [{"code": 25, "description": "", "parameter": None}]})
    error = refusal()
    assert error.permanent
    assert "not enough balance" in str(error)


def test_it_fails_for_good_on_a_refusal_without_a_json_body(
    fake_messagebird: FakeMessageBird,
) -> None:
    fake_messagebird.respond(404)
    error = refusal()
    assert error.permanent
    assert "HTTP 404" in str(error)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_it_retries_when_messagebird_is_down(
    fake_messagebird: FakeMessageBird, status: int
) -> None:
    fake_messagebird.respond(status)
    error = refusal()
    assert not error.permanent
    assert str(status) in str(error)
    assert error.retry_after is None


def test_it_retries_a_rate_limited_send_no_sooner_than_messagebird_asks(
    fake_messagebird: FakeMessageBird,
) -> None:
    fake_messagebird.respond(429, headers={"Retry-After": "30"})
    error = refusal()
    assert not error.permanent
    assert error.retry_after == 30


@pytest.mark.parametrize("value", ["soon", "-5", "nan", "inf", ""])
def test_it_ignores_a_retry_after_it_cannot_use(
    fake_messagebird: FakeMessageBird, value: str
) -> None:
    fake_messagebird.respond(429, headers={"Retry-After": value})
    error = refusal()
    assert not error.permanent
    assert error.retry_after is None


def test_it_retries_when_messagebird_cannot_be_reached(fake_messagebird: FakeMessageBird) -> None:
    fake_messagebird.close()  # nothing listens on the port any more: connection refused
    error = refusal()
    assert not error.permanent
    assert "could not reach MessageBird" in str(error)


def test_a_connection_dropped_before_the_answer_is_retried_later_not_at_once(
    fake_messagebird: FakeMessageBird,
) -> None:
    """MessageBird may have taken the message: only the outbox retries, after its backoff."""
    fake_messagebird.hang_up()
    error = refusal()
    assert not error.permanent
    assert "could not reach MessageBird" in str(error)
    assert len(fake_messagebird.requests) == 1


@pytest.mark.usefixtures("short_timeout")
def test_it_retries_when_messagebird_stalls(fake_messagebird: FakeMessageBird) -> None:
    fake_messagebird.stall()
    error = refusal()
    assert not error.permanent
    assert "did not answer in time" in str(error)
    assert len(fake_messagebird.requests) == 1


@pytest.mark.parametrize(
    "body", [{"href": "https://rest.messagebird.com/messages/"}, {"id": ""}, {"id": None}, []]
)
def test_it_does_not_resend_a_message_accepted_without_an_id(
    fake_messagebird: FakeMessageBird, body: Any
) -> None:
    # MessageBird created the message, so it may be on its way: a retry could
    # text the customer twice, and every retry would get the same answer.
    fake_messagebird.respond(201, body)
    error = refusal()
    assert error.permanent
    assert "no message id" in str(error)
