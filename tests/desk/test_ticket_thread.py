"""The ticket page's thread: every message as the agent reads it."""

from __future__ import annotations

import pytest
from django.test import Client

from smsdesk.desk.models import Contact, Message, Ticket


@pytest.mark.django_db
def test_the_thread_shows_who_wrote_each_message_and_what_became_of_it(
    agent_client: Client,
    agent,  # type: ignore[no-untyped-def]
) -> None:
    ticket = Ticket.objects.create(ref="K7F3QX", contact=Contact.objects.create(phone="+316123"))
    out, note = Message.Direction.OUT, Message.Direction.NOTE
    Message.objects.create(ticket=ticket, direction=Message.Direction.IN, body="a\nb <c>")
    Message.objects.create(ticket=ticket, direction=out, body="auto", status="delivered")
    Message.objects.create(
        ticket=ticket, direction=out, body="mine", author=agent, status="queued", segments=2,
        encoding="ucs2", last_error="timeout", attempts=2,
    )  # fmt: skip
    Message.objects.create(ticket=ticket, direction=note, body="psst", author=agent)

    thread = agent_client.get("/admin/tickets/K7F3QX?fragment=thread").content.decode()

    assert '<p class="body">a<br>b &lt;c&gt;</p>' in thread
    assert '<span class="from">Customer</span>' in thread
    assert '<span class="from">Automatic confirmation</span>' in thread
    assert '<span class="status status-delivered">Delivered</span>' in thread
    assert 'data-author="agent"><p class="note-label">Internal note</p>' in thread
    assert '<span class="segments" title="UCS2">2 SMS</span>' in thread
    assert '<p class="error">Retrying (attempt 2): timeout</p>' in thread
    assert thread.count("Split off") == 4 and "Resend" not in thread
