"""Working a ticket: views, counts, assignment, notes, names, unread markers,
new conversations and reply collisions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from smsdesk.desk.models import Contact, Message, Ticket, TicketRead
from tests.conftest import drain

pytestmark = pytest.mark.django_db


def make_ticket(phone: str, ref: str, **fields: object) -> Ticket:
    contact = Contact.objects.create(phone=phone)
    ticket = Ticket.objects.create(ref=ref, contact=contact, **fields)
    Message.objects.create(ticket=ticket, direction=Message.Direction.IN, body=f"Help from {phone}")
    return ticket


def refs(client: Client, url: str) -> list[str]:
    return [t.ref for t in client.get(url).context["tickets"]]


@pytest.fixture
def colleague(db: None):  # type: ignore[no-untyped-def]
    return get_user_model().objects.create_user("bea", password="another horse battery")


def test_mine_and_unassigned_views_split_the_open_tickets_with_counts(
    agent_client: Client, agent, colleague
) -> None:  # type: ignore[no-untyped-def]
    make_ticket("+31600000001", "AAAAAA", assignee=agent)
    make_ticket("+31600000002", "BBBBBB", assignee=colleague)
    make_ticket("+31600000003", "CCCCCC")
    make_ticket("+31600000004", "DDDDDD", assignee=agent, status=Ticket.Status.CLOSED)
    assert refs(agent_client, "/admin/?who=mine") == ["AAAAAA"]
    assert refs(agent_client, "/admin/?who=unassigned") == ["CCCCCC"]
    assert sorted(refs(agent_client, "/admin/")) == ["AAAAAA", "BBBBBB", "CCCCCC"]
    assert refs(agent_client, "/admin/?who=mine&status=closed") == ["DDDDDD"]
    tabs = agent_client.get("/admin/").context["owner_tabs"]()
    assert [(key, count) for key, _, count, _, _ in tabs] == [
        ("all", 3),
        ("mine", 1),
        ("unassigned", 1),
    ]


def test_view_links_keep_the_other_choices(agent_client: Client) -> None:
    context = agent_client.get("/admin/?who=mine&status=closed&q=parcel").context
    status_urls = {key: url for key, _, url, _ in context["status_tabs"]}
    assert status_urls["open"] == "?who=mine&q=parcel"
    owner_urls = {key: url for key, _, _, url, _ in context["owner_tabs"]()}
    assert owner_urls["all"] == "?status=closed&q=parcel"
    assert context["clear_url"] == "?status=closed&who=mine"


def test_an_unknown_view_falls_back_to_the_default(agent_client: Client) -> None:
    make_ticket("+31600000001", "AAAAAA")
    response = agent_client.get("/admin/?who=nobody&status=sideways")
    assert response.status_code == 200
    assert response.context["owner"] == "all" and response.context["status"] == "open"


def test_an_agent_assigns_a_ticket_to_themselves_a_colleague_and_nobody(
    agent_client: Client, agent, colleague
) -> None:  # type: ignore[no-untyped-def]
    ticket = make_ticket("+31600000001", "AAAAAA")
    agent_client.post("/admin/tickets/AAAAAA/assign", {"assignee": agent.pk})
    ticket.refresh_from_db()
    assert ticket.assignee == agent
    response = agent_client.post(
        "/admin/tickets/AAAAAA/assign", {"assignee": colleague.pk}, follow=True
    )
    assert "assigned to bea" in response.content.decode()
    ticket.refresh_from_db()
    assert ticket.assignee == colleague
    agent_client.post("/admin/tickets/AAAAAA/assign", {"assignee": ""})
    ticket.refresh_from_db()
    assert ticket.assignee is None


def test_assigning_to_an_unknown_agent_is_an_error_message_not_a_500(agent_client: Client) -> None:
    make_ticket("+31600000001", "AAAAAA")
    response = agent_client.post(
        "/admin/tickets/AAAAAA/assign", {"assignee": "999999"}, follow=True
    )
    assert response.status_code == 200
    assert "does not exist" in response.content.decode()
    assert Ticket.objects.get(ref="AAAAAA").assignee is None


def test_a_note_is_shown_to_agents_and_never_sent(agent_client: Client, agent) -> None:  # type: ignore[no-untyped-def]
    ticket = make_ticket("+31600000001", "AAAAAA")
    before = ticket.last_message_at
    response = agent_client.post(
        "/admin/tickets/AAAAAA/note", {"body": "Customer is a VIP"}, follow=True
    )
    note = Message.objects.get(direction=Message.Direction.NOTE)
    assert (note.body, note.author, note.status) == ("Customer is a VIP", agent, "")
    assert 'class="msg note"' in response.content.decode()
    assert "Internal note" in response.content.decode()
    drain()
    assert not Message.objects.filter(direction=Message.Direction.OUT).exists()
    ticket.refresh_from_db()
    assert ticket.last_message_at == before  # notes do not reorder the inbox


def test_an_empty_note_is_a_form_error(agent_client: Client) -> None:
    make_ticket("+31600000001", "AAAAAA")
    response = agent_client.post("/admin/tickets/AAAAAA/note", {"body": "   "})
    assert response.status_code == 400
    assert "Write something" in response.content.decode()
    assert not Message.objects.filter(direction=Message.Direction.NOTE).exists()


def test_a_contact_name_replaces_the_number_everywhere(agent_client: Client) -> None:
    make_ticket("+31600000001", "AAAAAA")
    agent_client.post("/admin/tickets/AAAAAA/contact", {"name": "  Ada Lovelace "})
    assert Contact.objects.get().name == "Ada Lovelace"
    inbox = agent_client.get("/admin/").content.decode()
    assert "Ada Lovelace" in inbox
    page = agent_client.get("/admin/tickets/AAAAAA").content.decode()
    assert "<h1>Ada Lovelace" in page and "+31600000001" in page
    agent_client.post("/admin/tickets/AAAAAA/contact", {"name": ""})
    assert Contact.objects.get().name == ""
    too_long = agent_client.post("/admin/tickets/AAAAAA/contact", {"name": "x" * 101}, follow=True)
    assert "at most 100" in too_long.content.decode()


def test_a_ticket_is_unread_for_each_agent_until_they_open_it(
    agent_client: Client, colleague
) -> None:  # type: ignore[no-untyped-def]
    ticket = make_ticket("+31600000001", "AAAAAA")
    other = Client()
    other.force_login(colleague)

    def unread(client: Client) -> bool:
        return not client.get("/admin/").context["tickets"][0].seen

    assert unread(agent_client) and unread(other)
    agent_client.get("/admin/tickets/AAAAAA")
    assert not unread(agent_client) and unread(other)
    # The customer writes again: unread again for the agent.
    Ticket.touch_all({ticket.pk: timezone.now() + timedelta(seconds=1)})
    assert unread(agent_client)
    assert 'class="unread-dot"' in agent_client.get("/admin/").content.decode()


def test_an_agents_own_reply_does_not_mark_the_ticket_unread_for_them(agent_client: Client) -> None:
    make_ticket("+31600000001", "AAAAAA")
    agent_client.get("/admin/tickets/AAAAAA")
    agent_client.post("/admin/tickets/AAAAAA/reply", {"body": "On it"})
    assert agent_client.get("/admin/").context["tickets"][0].seen
    assert TicketRead.objects.count() == 1


def test_an_agent_starts_a_conversation_with_any_number(agent_client: Client, agent) -> None:  # type: ignore[no-untyped-def]
    response = agent_client.post(
        "/admin/new", {"phone": "+44 7700 900123", "name": "Sam", "body": "Your order shipped"}
    )
    ticket = Ticket.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/admin/tickets/{ticket.ref}"
    assert (ticket.contact.phone, ticket.contact.name, ticket.assignee) == (
        "+447700900123",
        "Sam",
        agent,
    )
    [message] = ticket.messages.all()
    assert (message.direction, message.body, message.author) == ("out", "Your order shipped", agent)
    drain()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    # No confirmation text: the customer did not write in.
    assert ticket.messages.count() == 1


def test_texting_a_number_with_an_open_ticket_adds_to_that_ticket(agent_client: Client) -> None:
    ticket = make_ticket("+447700900123", "AAAAAA")
    response = agent_client.post(
        "/admin/new", {"phone": "+447700900123", "body": "Any news?"}, follow=True
    )
    assert Ticket.objects.count() == 1
    assert "already had ticket AAAAAA open" in response.content.decode()
    assert ticket.messages.filter(direction="out", body="Any news?").exists()


@pytest.mark.parametrize("phone", ["", "hello", "12", "ACME Ltd"])
def test_a_new_conversation_needs_a_phone_number(agent_client: Client, phone: str) -> None:
    response = agent_client.post("/admin/new", {"phone": phone, "body": "Hi"})
    assert response.status_code == 400
    assert response.context["form"].errors["phone"]
    assert not Ticket.objects.exists() and not Contact.objects.exists()


def test_a_national_number_uses_the_default_region(agent_client: Client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.SMSDESK_DEFAULT_REGION = "NL"
    agent_client.post("/admin/new", {"phone": "06 1234 5678", "body": "Hallo"})
    assert Contact.objects.get().phone == "+31612345678"


def test_a_reply_after_a_colleagues_reply_warns_and_keeps_the_draft(
    agent_client: Client, colleague
) -> None:  # type: ignore[no-untyped-def]
    ticket = make_ticket("+31600000001", "AAAAAA")
    seen = agent_client.get("/admin/tickets/AAAAAA").context["form"].initial["seen"]
    ticket.reply("Refund approved", author=colleague)
    response = agent_client.post(
        "/admin/tickets/AAAAAA/reply", {"body": "Let me check", "seen": seen}
    )
    assert response.status_code == 409
    page = response.content.decode()
    assert "bea replied since you opened this ticket" in page
    assert "Let me check</textarea>" in page and "Send anyway" in page
    assert not ticket.messages.filter(body="Let me check").exists()
    # Sending again from the warning goes through.
    form = response.context["form"]
    again = agent_client.post(
        "/admin/tickets/AAAAAA/reply",
        {"body": form["body"].value(), "seen": form["seen"].value(), "send_anyway": "on"},
    )
    assert again.status_code == 302
    assert ticket.messages.filter(body="Let me check").exists()


def test_an_agents_own_earlier_reply_is_no_collision(agent_client: Client, agent) -> None:  # type: ignore[no-untyped-def]
    ticket = make_ticket("+31600000001", "AAAAAA")
    seen = agent_client.get("/admin/tickets/AAAAAA").context["form"].initial["seen"]
    ticket.reply("First", author=agent)
    response = agent_client.post("/admin/tickets/AAAAAA/reply", {"body": "Second", "seen": seen})
    assert response.status_code == 302


def test_fragments_render_just_the_live_parts(agent_client: Client) -> None:
    make_ticket("+31600000001", "AAAAAA")
    listing = agent_client.get("/admin/?fragment=list").content.decode()
    assert listing.lstrip().startswith('<div class="ticket-list" data-live-fragment="list">')
    assert "AAAAAA" in listing and "<html" not in listing
    thread = agent_client.get("/admin/tickets/AAAAAA?fragment=thread").content.decode()
    assert 'data-live-fragment="thread"' in thread and "Help from" in thread
    assert "<html" not in thread
    # An unknown fragment is the whole page.
    assert "<html" in agent_client.get("/admin/?fragment=nope").content.decode()


def test_a_queued_reply_records_its_encoding_and_segments(agent_client: Client) -> None:
    make_ticket("+31600000001", "AAAAAA")
    agent_client.post("/admin/tickets/AAAAAA/reply", {"body": "Price: 10€\r\nThanks"})
    agent_client.post("/admin/tickets/AAAAAA/reply", {"body": "Thanks 🙂 " * 10})
    gsm, ucs2 = Message.objects.filter(direction="out").order_by("id")
    assert (gsm.body, gsm.encoding, gsm.segments) == ("Price: 10€\nThanks", "gsm7", 1)
    assert (ucs2.encoding, ucs2.segments) == ("ucs2", 2)


def test_a_too_short_search_says_so(agent_client: Client) -> None:
    make_ticket("+31600000001", "AAAAAA")
    page = agent_client.get("/admin/?q=ab").content.decode()
    assert "Type at least 3 letters or digits" in page
    page = agent_client.get("/admin/?q=zzzzzz").content.decode()
    assert "No open tickets match" in page
