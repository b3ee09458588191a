"""Inbound MessageBird webhooks: every request shape lands as one journal event, then a ticket."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.http import HttpResponse
from django.test import Client

from smsdesk.desk.models import Message, Ticket
from smsdesk.sms.models import InboundEvent
from tests.conftest import drain

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "messagebird"
FORM = "application/x-www-form-urlencoded"
SHAPES = ["flowbuilder_json", "flowbuilder_form", "legacy_get_query", "legacy_post_form"]
URLS = ["/webhook", "/webhooks/messagebird"]


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text().strip()


def deliver(client: Client, shape: str, url: str = "/webhook") -> HttpResponse:
    """Send one fixture the way MessageBird would."""
    if shape == "flowbuilder_json":
        return client.post(url, fixture("flowbuilder_json.json"), content_type="application/json")
    if shape == "legacy_get_query":
        return client.get(f"{url}?{fixture('legacy_get_query.txt')}")
    return client.post(url, fixture(f"{shape}.txt"), content_type=FORM)


# What each fixture must turn into; `None` for a key means a payload hash.
EXPECTED = {
    "flowbuilder_json": {
        "text": "Hi, my order #1234 never arrived",
        "key": "b1f0c3d2e4a54c7e9a0b1c2d3e4f5a6b",
        "recipient": "+3197010254321",
        "sent_at": datetime(2026, 10, 5, 12, 3, 11, tzinfo=UTC),
    },
    "flowbuilder_form": {
        "text": "Hi, my order #1234 never arrived",
        "key": None,
        "recipient": "+3197010254321",
        "sent_at": datetime(2026, 10, 5, 12, 3, 11, tzinfo=UTC),
    },
    "legacy_get_query": {
        "text": "This is an incoming message",
        "key": "e8077d803532c0b5937c639b60216938",
        "recipient": "31642500190",
        "sent_at": datetime(2016, 5, 3, 14, 26, 57, tzinfo=UTC),
    },
    "legacy_post_form": {
        "text": "Where is my parcel?",
        "key": "6a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "recipient": "31642500190",
        "sent_at": datetime(2016, 5, 3, 14, 26, 57, tzinfo=UTC),
    },
}


def post_json(client: Client, data: object, url: str = "/webhook") -> HttpResponse:
    return client.post(url, json.dumps(data), content_type="application/json")


def post_form(client: Client, data: dict[str, str], url: str = "/webhook") -> HttpResponse:
    return client.post(url, urlencode(data), content_type=FORM)


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("shape", SHAPES)
def test_it_stores_each_request_shape_as_one_event(client: Client, shape: str, url: str) -> None:
    response = deliver(client, shape, url)

    assert response.status_code == 200
    assert response.content == b"OK"
    event = InboundEvent.objects.get()
    expected = EXPECTED[shape]
    assert event.provider == "messagebird"
    assert event.sender == "+31612345678"
    assert event.text == expected["text"]
    assert event.recipient == expected["recipient"]
    assert event.sent_at == expected["sent_at"]
    if expected["key"] is None:
        assert event.key.startswith("sha256:")
        assert len(event.key) == len("sha256:") + 64
    else:
        assert event.key == expected["key"]
    assert event.processed_at is None


@pytest.mark.parametrize("shape", SHAPES)
def test_each_request_shape_lands_in_a_ticket_with_a_confirmation(
    client: Client, shape: str
) -> None:
    deliver(client, shape)

    drain()

    ticket = Ticket.objects.get()
    assert ticket.contact.phone == "+31612345678"
    incoming = ticket.messages.get(direction=Message.Direction.IN)
    assert incoming.body == EXPECTED[shape]["text"]
    confirmation = ticket.messages.get(direction=Message.Direction.OUT)
    assert ticket.ref in confirmation.body
    assert confirmation.status == Message.Status.SENT
    assert InboundEvent.objects.get().processed_at is not None


@pytest.mark.parametrize("shape", SHAPES)
def test_a_duplicate_delivery_stores_one_event_one_message_one_confirmation(
    client: Client, shape: str
) -> None:
    first = deliver(client, shape)
    drain()
    second = deliver(client, shape)
    drain()

    assert (first.status_code, second.status_code) == (200, 200)
    assert InboundEvent.objects.count() == 1
    assert Ticket.objects.count() == 1
    assert Message.objects.filter(direction=Message.Direction.IN).count() == 1
    assert Message.objects.filter(direction=Message.Direction.OUT).count() == 1


def test_a_duplicate_delivered_before_the_worker_runs_is_also_one_event(client: Client) -> None:
    deliver(client, "flowbuilder_form")
    deliver(client, "flowbuilder_form")

    drain()

    assert InboundEvent.objects.count() == 1
    assert Message.objects.filter(direction=Message.Direction.IN).count() == 1
    assert Message.objects.filter(direction=Message.Direction.OUT).count() == 1


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        (
            {"payload": "from payload", "body": "from body", "incomingMessage": "from im"},
            "from payload",
        ),
        ({"payload": "", "body": "from body", "incomingMessage": "from im"}, "from body"),
        ({"payload": "  ", "body": "", "incomingMessage": "from im"}, "from im"),
        ({"incomingMessage": "only im"}, "only im"),
    ],
)
def test_it_takes_the_text_from_payload_then_body_then_incoming_message(
    client: Client, fields: dict[str, str], text: str
) -> None:
    response = post_form(client, {"originator": "31612345678", **fields})

    assert response.status_code == 200
    assert InboundEvent.objects.get().text == text


@pytest.mark.parametrize(
    ("ids", "key"),
    [
        ({"message_id": "mid-1", "id": "id-1"}, "mid-1"),
        ({"message_id": "", "id": "id-1"}, "id-1"),
        ({"id": "id-1"}, "id-1"),
    ],
)
def test_it_keys_the_event_on_message_id_then_id(
    client: Client, ids: dict[str, str], key: str
) -> None:
    post_form(client, {"originator": "31612345678", "payload": "hi", **ids})

    assert InboundEvent.objects.get().key == key


def test_without_an_id_the_flow_run_time_tells_two_identical_texts_apart(client: Client) -> None:
    fields = {"originator": "+31612345678", "payload": "hi", "message_id": "", "id": ""}
    post_json(client, {**fields, "currentTime": "2026-10-05T14:03:11+02:00"})
    post_json(client, {**fields, "currentTime": "2026-10-05T14:03:11+02:00"})
    post_json(client, {**fields, "currentTime": "2026-10-05T14:05:42+02:00"})

    keys = list(InboundEvent.objects.values_list("key", flat=True))
    assert len(keys) == 2
    assert all(key.startswith("sha256:") for key in keys)


def test_it_accepts_a_recipient_and_originator_sent_as_json_numbers(client: Client) -> None:
    response = post_json(
        client, {"originator": 31612345678, "recipient": 3197010254321, "payload": "hi", "id": "n1"}
    )

    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert (event.sender, event.recipient) == ("+31612345678", "3197010254321")


@pytest.mark.parametrize(
    "query_time",
    [
        "2016-05-03T14%3A26%3A57%2B00%3A00",
        "2016-05-03T14:26:57%2B00:00",
        "2016-05-03T16:26:57%2B02:00",
    ],
)
def test_it_reads_created_datetime_with_a_percent_encoded_offset(
    client: Client, query_time: str
) -> None:
    client.get(f"/webhook?id=t1&originator=31612345678&body=hi&createdDatetime={query_time}")

    assert InboundEvent.objects.get().sent_at == datetime(2016, 5, 3, 14, 26, 57, tzinfo=UTC)


def test_it_reads_created_datetime_whose_plus_arrived_as_a_space(client: Client) -> None:
    # An unencoded "+" in a query string decodes to a space (providers.md §2).
    client.get(
        "/webhook?id=t1&originator=31612345678&body=hi&createdDatetime=2016-05-03T14:26:57+00:00"
    )

    assert InboundEvent.objects.get().sent_at == datetime(2016, 5, 3, 14, 26, 57, tzinfo=UTC)


@pytest.mark.parametrize(
    "created", ["yesterday", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2016-05-03"]
)
def test_it_keeps_a_text_whose_timestamp_it_cannot_use(client: Client, created: str) -> None:
    response = post_form(
        client, {"originator": "31612345678", "body": "hi", "id": "t1", "createdDatetime": created}
    )

    assert response.status_code == 200
    assert InboundEvent.objects.get().sent_at is None


def test_it_keeps_an_alphanumeric_sender_id(client: Client) -> None:
    post_form(client, {"originator": "MyShop 24", "payload": "Your parcel ships today", "id": "a1"})
    drain()

    ticket = Ticket.objects.get()
    assert ticket.contact.phone == "MyShop 24"
    # A sender name cannot be texted back, so no confirmation is queued.
    assert not ticket.messages.filter(direction=Message.Direction.OUT).exists()


def test_the_journal_keeps_the_request_as_it_arrived(client: Client) -> None:
    deliver(client, "legacy_get_query")

    raw = InboundEvent.objects.get().raw
    assert raw["method"] == "GET"
    assert raw["path"] == "/webhook"
    assert raw["query"] == fixture("legacy_get_query.txt")
