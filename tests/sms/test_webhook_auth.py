"""Who may post to the inbound webhook: signed requests, the secret token URL, demo mode."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from django.http import HttpResponse
from django.test import Client

from smsdesk.sms.models import InboundEvent
from tests.sms.signing import SIGNING_KEY, signature

pytestmark = pytest.mark.django_db

TOKEN = "7Qm1c0x9kZ4dR2vW8pLs"
BODY = json.dumps({"originator": "+31612345678", "payload": "Where is my order?", "id": "sig-1"})
QUERY = "id=sig-2&originator=31612345678&body=Hello"


def post_signed(
    client: Client,
    path: str = "/webhook",
    body: str = BODY,
    jwt_header: str | None = None,
    **extra: Any,
) -> HttpResponse:
    headers = {"MessageBird-Signature-JWT": jwt_header} if jwt_header is not None else {}
    return client.post(path, body, content_type="application/json", headers=headers, **extra)


def assert_refused(response: HttpResponse, caplog: pytest.LogCaptureFixture, reason: str) -> None:
    assert response.status_code == 401
    assert reason in response.content.decode()
    assert any(
        record.levelno == logging.WARNING and reason in record.getMessage()
        for record in caplog.records
    )
    assert not InboundEvent.objects.exists()


@pytest.fixture
def signing_key(settings: Any) -> str:
    settings.MESSAGEBIRD_SIGNING_KEY = SIGNING_KEY
    return SIGNING_KEY


@pytest.fixture
def webhook_token(settings: Any) -> str:
    settings.SMSDESK_WEBHOOK_TOKEN = TOKEN
    return TOKEN


# Signed requests


@pytest.mark.usefixtures("signing_key")
@pytest.mark.parametrize("path", ["/webhook", "/webhooks/messagebird"])
def test_it_stores_a_correctly_signed_post(client: Client, path: str) -> None:
    response = post_signed(client, path, jwt_header=signature(f"http://testserver{path}", BODY))

    assert response.status_code == 200
    assert InboundEvent.objects.get().key == "sig-1"


@pytest.mark.usefixtures("signing_key")
def test_it_stores_a_correctly_signed_get_with_a_query(client: Client) -> None:
    url = f"http://testserver/webhook?{QUERY}"

    response = client.get(
        f"/webhook?{QUERY}", headers={"MessageBird-Signature-JWT": signature(url)}
    )

    assert response.status_code == 200
    assert InboundEvent.objects.get().key == "sig-2"


@pytest.mark.usefixtures("signing_key")
def test_it_refuses_a_request_without_the_signature_header(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    assert_refused(post_signed(client), caplog, "missing MessageBird-Signature-JWT header")


@pytest.mark.usefixtures("signing_key")
def test_it_refuses_a_token_signed_with_another_key(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    forged = signature("http://testserver/webhook", BODY, key="not-the-signing-key-but-32-bytes")

    assert_refused(post_signed(client, jwt_header=forged), caplog, "signature is invalid")


@pytest.mark.usefixtures("signing_key")
def test_it_refuses_a_garbled_signature_header(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    assert_refused(post_signed(client, jwt_header="not.a.jwt"), caplog, "invalid jwt")


@pytest.mark.usefixtures("signing_key")
def test_it_refuses_a_url_signed_with_another_query_order(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    reordered = "originator=31612345678&id=sig-2&body=Hello"
    header = signature(f"http://testserver/webhook?{reordered}")

    response = client.get(f"/webhook?{QUERY}", headers={"MessageBird-Signature-JWT": header})

    assert_refused(response, caplog, "url_hash is invalid")


@pytest.mark.usefixtures("signing_key")
def test_it_refuses_a_signature_for_another_path(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    header = signature("http://testserver/webhooks/messagebird", BODY)

    assert_refused(
        post_signed(client, "/webhook", jwt_header=header), caplog, "url_hash is invalid"
    )


@pytest.mark.usefixtures("signing_key")
def test_it_refuses_a_tampered_body(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    header = signature("http://testserver/webhook", BODY)
    tampered = BODY.replace("Where is my order?", "Send the refund to IBAN X")

    assert_refused(
        post_signed(client, body=tampered, jwt_header=header), caplog, "payload_hash is invalid"
    )


@pytest.mark.usefixtures("signing_key")
def test_it_refuses_an_expired_signature(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    old = int(time.time()) - 3600
    header = signature("http://testserver/webhook", BODY, nbf=old, exp=old + 60)

    assert_refused(post_signed(client, jwt_header=header), caplog, "exp is in the past")


@pytest.mark.usefixtures("signing_key")
def test_a_signed_request_behind_a_proxy_verifies_against_the_public_url(
    client: Client, settings: Any
) -> None:
    settings.SMSDESK_PUBLIC_URL = "https://desk.example.com"
    header = signature(f"https://desk.example.com/webhook?{QUERY}")

    # The proxy forwards to an internal address; the Host is not what MessageBird called.
    response = client.get(
        f"/webhook?{QUERY}",
        headers={"MessageBird-Signature-JWT": header},
        HTTP_HOST="10.0.0.7:8080",
    )

    assert response.status_code == 200
    assert InboundEvent.objects.get().key == "sig-2"


@pytest.mark.usefixtures("signing_key")
def test_without_a_public_url_the_internal_host_is_what_is_hashed(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    header = signature(f"https://desk.example.com/webhook?{QUERY}")

    response = client.get(
        f"/webhook?{QUERY}",
        headers={"MessageBird-Signature-JWT": header},
        HTTP_HOST="10.0.0.7:8080",
    )

    assert_refused(response, caplog, "url_hash is invalid")


# The secret token URL


@pytest.mark.usefixtures("webhook_token")
@pytest.mark.parametrize("path", [f"/webhook/{TOKEN}", f"/webhooks/messagebird/{TOKEN}"])
def test_it_accepts_the_secret_token_url(client: Client, path: str) -> None:
    response = post_signed(client, path)

    assert response.status_code == 200
    assert InboundEvent.objects.count() == 1


@pytest.mark.usefixtures("webhook_token")
def test_the_token_does_not_end_up_in_the_journal(client: Client) -> None:
    post_signed(client, f"/webhook/{TOKEN}")

    raw = InboundEvent.objects.get().raw
    assert TOKEN not in json.dumps(raw)
    assert raw["path"] == "/webhook/{token}"


@pytest.mark.usefixtures("signing_key", "webhook_token")
def test_the_token_does_not_end_up_in_the_log(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    post_signed(client, f"/webhook/{TOKEN}", jwt_header="not.a.jwt")

    assert caplog.records
    assert TOKEN not in caplog.text


@pytest.mark.usefixtures("webhook_token")
@pytest.mark.parametrize(
    "path", ["/webhook/wrong-token", f"/webhook/{TOKEN}x", f"/webhook/{TOKEN[:-1]}"]
)
def test_it_refuses_a_wrong_token(
    client: Client, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    assert_refused(post_signed(client, path), caplog, "unknown webhook token")


@pytest.mark.usefixtures("webhook_token")
@pytest.mark.parametrize("path", ["/webhook", "/webhooks/messagebird"])
def test_with_a_token_set_the_plain_url_is_refused(
    client: Client, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    assert_refused(post_signed(client, path), caplog, "secret token URL")


def test_a_token_url_is_refused_when_no_token_is_configured(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    assert_refused(post_signed(client, "/webhook/anything"), caplog, "unknown webhook token")


# Demo and production


def test_demo_mode_accepts_unsigned_webhooks(client: Client) -> None:
    assert post_signed(client).status_code == 200
    assert InboundEvent.objects.count() == 1


def test_production_without_a_key_or_token_refuses_unsigned_webhooks(
    client: Client, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.PRODUCTION = True

    assert_refused(post_signed(client), caplog, "refused in production")


@pytest.mark.usefixtures("signing_key")
def test_production_with_a_key_accepts_a_signed_request(client: Client, settings: Any) -> None:
    settings.PRODUCTION = True

    response = post_signed(client, jwt_header=signature("http://testserver/webhook", BODY))

    assert response.status_code == 200
    assert InboundEvent.objects.count() == 1


# Both a signing key and a token


@pytest.mark.usefixtures("signing_key", "webhook_token")
def test_with_both_set_the_token_url_needs_no_signature(client: Client) -> None:
    response = post_signed(client, f"/webhook/{TOKEN}")

    assert response.status_code == 200
    assert InboundEvent.objects.count() == 1


@pytest.mark.usefixtures("signing_key", "webhook_token")
def test_with_both_set_a_bad_signature_on_the_token_url_is_refused(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    forged = signature(
        f"http://testserver/webhook/{TOKEN}", BODY, key="not-the-signing-key-but-32-bytes"
    )

    assert_refused(
        post_signed(client, f"/webhook/{TOKEN}", jwt_header=forged), caplog, "signature is invalid"
    )


@pytest.mark.usefixtures("signing_key", "webhook_token")
def test_with_both_set_a_good_signature_on_the_token_url_is_accepted(client: Client) -> None:
    header = signature(f"http://testserver/webhook/{TOKEN}", BODY)

    assert post_signed(client, f"/webhook/{TOKEN}", jwt_header=header).status_code == 200
    assert InboundEvent.objects.count() == 1


@pytest.mark.usefixtures("signing_key", "webhook_token")
def test_with_both_set_the_plain_url_takes_a_signed_request(client: Client) -> None:
    header = signature("http://testserver/webhook", BODY)

    assert post_signed(client, jwt_header=header).status_code == 200
    assert InboundEvent.objects.count() == 1


@pytest.mark.usefixtures("signing_key", "webhook_token")
def test_with_both_set_the_plain_url_refuses_an_unsigned_request(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    assert_refused(post_signed(client), caplog, "missing MessageBird-Signature-JWT header")
