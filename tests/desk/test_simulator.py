"""/simulator: a phone in the browser that texts the desk through the webhook's parser."""

from __future__ import annotations

import pytest
from django.test import Client

from smsdesk.desk.models import Ticket
from smsdesk.sms.models import InboundEvent
from tests.conftest import drain

pytestmark = pytest.mark.django_db


def test_a_text_from_the_simulator_opens_a_ticket_and_the_confirmation_shows_on_the_phone(
    client: Client,
) -> None:
    response = client.post(
        "/simulator/send", {"phone": "+31 6 1234 5678", "text": "My parcel is late"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/simulator/?phone=%2B31612345678"
    event = InboundEvent.objects.get()
    assert (event.provider, event.sender, event.text) == (
        "simulator",
        "+31612345678",
        "My parcel is late",
    )
    drain()
    ticket = Ticket.objects.get()
    page = client.get("/simulator/?phone=%2B31612345678").content.decode()
    assert "My parcel is late" in page
    assert f"Your ticket ID is {ticket.ref}." in page


def test_an_agent_reply_arrives_on_the_simulated_phone(client: Client, agent) -> None:  # type: ignore[no-untyped-def]
    client.post("/simulator/send", {"phone": "+31612345678", "text": "Hello?"})
    drain()
    Ticket.objects.get().reply("Hi! How can we help?", author=agent)
    assert "How can we help" not in client.get("/simulator/?phone=%2B31612345678").content.decode()
    drain()
    assert "How can we help" in client.get("/simulator/?phone=%2B31612345678").content.decode()


def test_the_phone_remembers_its_number_between_visits(client: Client) -> None:
    client.post("/simulator/send", {"phone": "+31612345678", "text": "Hello"})
    assert client.get("/simulator/").context["phone"] == "+31612345678"


@pytest.mark.parametrize(
    "form, reason",
    [
        ({"phone": "12", "text": "hi"}, "bad originator"),
        ({"phone": "+31612345678", "text": ""}, "This field is required"),
        ({"phone": "", "text": "hi"}, "This field is required"),
    ],
)
def test_a_bad_simulator_text_gets_a_form_error(
    client: Client, form: dict[str, str], reason: str
) -> None:
    response = client.post("/simulator/send", form)
    assert response.status_code == 400
    assert reason in response.content.decode()
    assert not InboundEvent.objects.exists()


def test_the_simulator_is_gone_once_a_real_provider_is_configured(client: Client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.SMSDESK_PROVIDER = "messagebird"
    assert client.get("/simulator/").status_code == 404
    assert (
        client.post("/simulator/send", {"phone": "+31612345678", "text": "hi"}).status_code == 404
    )
