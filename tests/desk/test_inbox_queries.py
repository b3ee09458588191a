"""The inbox and ticket pages cost a fixed number of queries, however much is stored."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from smsdesk.desk.models import Contact, Message, Ticket

pytestmark = pytest.mark.django_db

INBOX_VIEWS = ["/admin/", "/admin/?status=closed", "/admin/?status=all"]


def add_tickets(count: int, start: int = 0, messages: int = 3) -> list[Ticket]:
    """Tickets with customer texts and agent replies by different agents."""
    now = timezone.now()
    tickets = []
    for n in range(start, start + count):
        author = get_user_model().objects.create_user(f"agent{n}")
        contact = Contact.objects.create(phone=f"+3161000{n:04d}", name=f"Customer {n}")
        ticket = Ticket.objects.create(
            ref=f"Q{n:05d}",
            contact=contact,
            status=Ticket.Status.CLOSED if n % 3 == 0 else Ticket.Status.OPEN,
            assignee=author,
            last_message_at=now - timedelta(minutes=n),
        )
        for m in range(messages):
            inbound = m % 2 == 0
            Message.objects.create(
                ticket=ticket,
                direction=Message.Direction.IN if inbound else Message.Direction.OUT,
                body=f"text {m} on {n}",
                author=None if inbound else author,
                status="" if inbound else Message.Status.DELIVERED,
            )
        tickets.append(ticket)
    return tickets


def queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def next_page(client: Client, url: str) -> str:
    following = client.get(url).context["next_url"]
    assert following, "expected another page"
    return "/admin/" + following


def test_the_inbox_views_take_as_many_queries_for_sixty_tickets_as_for_two(
    agent_client: Client, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    add_tickets(2)
    few = {url: queries(agent_client, url) for url in INBOX_VIEWS}
    add_tickets(58, start=2)
    many = {url: queries(agent_client, url) for url in INBOX_VIEWS}
    assert many == few
    # Session, user, the open-ticket counts, one page of tickets with their
    # previews, the newest live event (where the page's live updates start).
    with django_assert_max_num_queries(5):
        agent_client.get("/admin/?status=all")


def test_a_later_page_takes_as_many_queries_as_the_first(agent_client: Client) -> None:
    add_tickets(60)
    first = queries(agent_client, "/admin/?status=all")
    assert queries(agent_client, next_page(agent_client, "/admin/?status=all")) == first


def test_the_ticket_page_takes_as_many_queries_for_200_messages_as_for_2(
    agent_client: Client, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    short, long = add_tickets(2, messages=2)
    for m in range(198):
        author = get_user_model().objects.create_user(f"helper{m}") if m % 2 else None
        Message.objects.create(
            ticket=long,
            direction=Message.Direction.OUT if author else Message.Direction.IN,
            body=f"more {m}",
            author=author,
        )
    assert long.messages.count() == 200
    assert queries(agent_client, f"/admin/tickets/{long.ref}") == queries(
        agent_client, f"/admin/tickets/{short.ref}"
    )
    # Session, user, the ticket with its contact, the thread with its authors,
    # the agent's read marker, the agents to assign to, who else is viewing,
    # the customer's other tickets (to merge into), the newest live event.
    with django_assert_max_num_queries(9):
        agent_client.get(f"/admin/tickets/{long.ref}")


def test_the_preview_is_the_last_text_of_the_conversation(agent_client: Client, agent) -> None:  # type: ignore[no-untyped-def]
    (ticket,) = add_tickets(1, start=1, messages=0)
    at = timezone.now() - timedelta(hours=1)

    def add(direction: str, body: str, author: object = None, minutes: int = 0) -> None:
        Message.objects.create(
            ticket=ticket,
            direction=direction,
            body=body,
            author=author,
            created=at + timedelta(minutes=minutes),
        )

    add("in", "My parcel is late")
    add("out", "Thanks for contacting customer support!", minutes=1)  # automatic
    add("out", "Sorry, it ships today", author=agent, minutes=2)
    add("note", "Warehouse says Tuesday", author=agent, minutes=3)
    add("out", "Your ticket ID is Q00001", minutes=4)  # automatic again
    row = agent_client.get("/admin/").context["tickets"][0]
    assert (row.last_direction, row.last_body) == ("out", "Sorry, it ships today")

    # Two texts in the same microsecond: the later row is the later text.
    add("in", "Where is it?", minutes=5)
    add("in", "Hello??", minutes=5)
    body = agent_client.get("/admin/").content.decode()
    row = agent_client.get("/admin/").context["tickets"][0]
    assert (row.last_direction, row.last_body) == ("in", "Hello??")
    assert "Hello??" in body and "Warehouse says Tuesday" not in body


def test_pages_of_all_tickets_follow_the_full_order_across_equal_timestamps(
    agent_client: Client,
) -> None:
    tickets = add_tickets(60)
    same = timezone.now() - timedelta(days=1)
    # Every other ticket shares one timestamp, open and closed ones alike,
    # so page boundaries fall inside the tie.
    Ticket.objects.filter(pk__in=[t.pk for t in tickets[::2]]).update(last_message_at=same)
    expected = list(
        Ticket.objects.order_by("-last_message_at", "-id").values_list("ref", flat=True)
    )
    seen: list[str] = []
    url = "/admin/?status=all"
    while url:
        response = agent_client.get(url)
        seen += [t.ref for t in response.context["tickets"]]
        following = response.context["next_url"]
        url = "/admin/" + following if following else ""
    assert seen == expected


def test_a_live_refresh_of_the_list_skips_the_counts(
    agent_client: Client, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    add_tickets(3)
    full = queries(agent_client, "/admin/")
    assert queries(agent_client, "/admin/?fragment=list") == full - 2  # no counts, no live cursor
