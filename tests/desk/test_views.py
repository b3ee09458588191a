"""The agent inbox at /admin: sign-in, list, thread, reply, close and reopen."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from smsdesk.desk.models import Contact, Message, Ticket
from tests.conftest import drain

pytestmark = pytest.mark.django_db


def make_ticket(phone: str = "+31612345678", ref: str = "K7F3QX", **fields: object) -> Ticket:
    contact = Contact.objects.create(phone=phone)
    ticket = Ticket.objects.create(ref=ref, contact=contact, **fields)
    Message.objects.create(ticket=ticket, direction=Message.Direction.IN, body=f"Help from {phone}")
    return ticket


def test_the_inbox_needs_a_signed_in_agent(client: Client) -> None:
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/admin/")
    assert client.get("/admin/tickets/K7F3QX").status_code == 302


def test_admin_without_a_slash_leads_to_the_inbox_like_the_sample(agent_client: Client) -> None:
    response = agent_client.get("/admin", follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == "/admin/"


def test_an_agent_signs_in_with_a_password(client: Client, agent) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/login/", {"username": "agent", "password": "correct horse battery"})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
    wrong = Client().post("/login/", {"username": "agent", "password": "nope"})
    assert wrong.status_code == 200
    assert b"correct username and password" in wrong.content


def test_the_inbox_lists_open_tickets_latest_activity_first(agent_client: Client) -> None:
    now = timezone.now()
    make_ticket("+31600000001", "AAAAAA", last_message_at=now - timedelta(hours=2))
    make_ticket("+31600000002", "BBBBBB", last_message_at=now)
    make_ticket("+31600000003", "CCCCCC", last_message_at=now - timedelta(hours=1))
    make_ticket("+31600000004", "DDDDDD", status=Ticket.Status.CLOSED)
    body = agent_client.get("/admin/").content.decode()
    positions = [body.index(f"#{ref}") for ref in ("BBBBBB", "CCCCCC", "AAAAAA")]
    assert positions == sorted(positions)
    assert "DDDDDD" not in body
    assert "Help from +31600000002" in body
    closed = agent_client.get("/admin/?status=closed").content.decode()
    assert "DDDDDD" in closed and "AAAAAA" not in closed


def test_the_inbox_pages_through_many_tickets_without_repeats(agent_client: Client) -> None:
    now = timezone.now()
    for n in range(60):
        # Ten share one timestamp, so the id must break the tie.
        make_ticket(
            f"+316000001{n:02d}", f"R{n:05d}", last_message_at=now - timedelta(minutes=n // 10)
        )
    seen: list[str] = []
    url = "/admin/"
    while url:
        response = agent_client.get(url)
        page = [t.ref for t in response.context["tickets"]]
        assert len(page) <= 25
        seen += page
        following = response.context["next_url"]
        url = "/admin/" + following if following else ""
    assert len(seen) == 60
    assert len(set(seen)) == 60


def test_a_garbled_page_cursor_shows_the_first_page(agent_client: Client) -> None:
    make_ticket()
    response = agent_client.get("/admin/?after=notacursor&status=bogus")
    assert response.status_code == 200
    assert "K7F3QX" in response.content.decode()


def test_the_ticket_page_shows_the_whole_thread(agent_client: Client, agent) -> None:  # type: ignore[no-untyped-def]
    ticket = make_ticket()
    Message.objects.create(
        ticket=ticket,
        direction="out",
        body="We are on it",
        author=agent,
        status="failed",
        last_error="MessageBird refused the message: no (correct) recipients found",
    )
    body = agent_client.get("/admin/tickets/K7F3QX").content.decode()
    assert "Help from +31612345678" in body
    assert "We are on it" in body
    assert "no (correct) recipients found" in body
    assert "failed" in body
    assert agent_client.get("/admin/tickets/k7f3qx").status_code == 200


@pytest.mark.parametrize("ref", ["NOPE00", "../../etc", "x" * 300, "%00", "1;DROP"])
def test_an_unknown_or_malformed_ref_is_a_404(agent_client: Client, ref: str) -> None:
    make_ticket()
    assert agent_client.get(f"/admin/tickets/{ref}").status_code == 404
    assert agent_client.post(f"/admin/tickets/{ref}/reply", {"body": "hi"}).status_code == 404
    assert not Message.objects.filter(direction="out").exists()


def test_a_reply_is_queued_with_its_author_and_sent_by_the_worker(
    agent_client: Client, agent
) -> None:  # type: ignore[no-untyped-def]
    make_ticket()
    response = agent_client.post(
        "/admin/tickets/K7F3QX/reply", {"body": "  We shipped it today.  "}
    )
    assert response.status_code == 302
    assert response["Location"] == "/admin/tickets/K7F3QX"
    reply = Message.objects.get(direction="out")
    assert (reply.body, reply.author, reply.status) == ("We shipped it today.", agent, "queued")
    drain()
    reply.refresh_from_db()
    assert reply.status == "sent"
    page = agent_client.get("/admin/tickets/K7F3QX").content.decode()
    assert "We shipped it today." in page


@pytest.mark.parametrize("body", ["", "   ", "x" * 1378])
def test_a_bad_reply_gets_a_form_error_and_queues_nothing(agent_client: Client, body: str) -> None:
    make_ticket()
    response = agent_client.post("/admin/tickets/K7F3QX/reply", {"body": body})
    assert response.status_code == 400
    assert response.context["form"].errors["body"]
    assert not Message.objects.filter(direction="out").exists()


def test_a_reply_to_a_sender_name_gets_a_form_error(agent_client: Client) -> None:
    make_ticket(phone="MyShop")
    response = agent_client.post("/admin/tickets/K7F3QX/reply", {"body": "Hello"})
    assert response.status_code == 400
    assert "cannot receive SMS" in response.content.decode()
    assert not Message.objects.filter(direction="out").exists()


def test_forms_refuse_a_post_without_a_csrf_token(agent) -> None:  # type: ignore[no-untyped-def]
    make_ticket()
    client = Client(enforce_csrf_checks=True)
    client.force_login(agent)
    assert client.post("/admin/tickets/K7F3QX/reply", {"body": "hi"}).status_code == 403
    assert client.post("/admin/tickets/K7F3QX/close").status_code == 403
    assert not Message.objects.filter(direction="out").exists()


def test_state_changes_take_post_only(agent_client: Client) -> None:
    make_ticket()
    for action in ("reply", "close", "reopen"):
        assert agent_client.get(f"/admin/tickets/K7F3QX/{action}").status_code == 405


def test_an_agent_closes_and_reopens_a_ticket(agent_client: Client) -> None:
    ticket = make_ticket()
    agent_client.post("/admin/tickets/K7F3QX/close")
    ticket.refresh_from_db()
    assert ticket.status == "closed"
    assert ticket not in agent_client.get("/admin/").context["tickets"]
    agent_client.post("/admin/tickets/K7F3QX/reopen")
    ticket.refresh_from_db()
    assert ticket.status == "open"


def test_reopening_an_older_ticket_beside_an_open_one_keeps_texts_on_the_open_one(
    agent_client: Client,
) -> None:
    old = make_ticket(status=Ticket.Status.CLOSED, current=False)
    newer = Ticket.objects.create(ref="NEWONE", contact=old.contact)
    response = agent_client.post("/admin/tickets/K7F3QX/reopen", follow=True)
    assert response.status_code == 200
    assert "Ticket K7F3QX reopened." in response.content.decode()
    old.refresh_from_db()
    newer.refresh_from_db()
    assert (old.status, old.current, newer.current) == ("open", False, True)


def test_djangos_own_admin_site_lives_elsewhere(admin_client: Client) -> None:
    assert admin_client.get("/django-admin/").status_code == 200
