"""The inbox rows, rendered in Python, read as the template rows did, escaped alike."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.template import Context, Template
from django.test import Client
from django.utils import timezone

from smsdesk.desk.models import Contact, Message, Ticket, TicketRead

pytestmark = pytest.mark.django_db

# The row markup _inbox_list.html had before its rows moved to desk_inbox.py.
TEMPLATE_ROWS = Template(
    """{% load desk_time %}{% for t in tickets %}
  {% with unread=t.seen|yesno:",unread" %}
  <li>
    <a class="ticket-row{% if t.last_direction == 'in' and t.status == 'open' %} awaiting{% endif %}{% if unread and t.status == 'open' %} unread{% endif %}" href="{% url 'desk:ticket' t.ref %}" data-row>
      <span class="row-top">
        {% if unread and t.status == "open" %}<span class="unread-dot" aria-hidden="true"></span><span class="sr-only">Unread:</span>{% endif %}
        <span class="who">{{ t.contact }}</span>
        <span class="ref">#{{ t.ref }}</span>
        {% if t.status == "closed" %}<span class="badge closed">Closed</span>{% endif %}
        {% if t.contact.opted_out_at %}<span class="badge opted-out" title="Texted STOP: no SMS can be sent">Opted out</span>{% endif %}
        <span class="spacer"></span>
        {% if t.assignee %}<span class="owner" title="Assigned to {{ t.assignee.get_username }}">{{ t.assignee.get_username }}</span>{% else %}<span class="owner none">Unassigned</span>{% endif %}
        {{ t.last_message_at|message_time }}
      </span>
      <span class="preview">{% if t.last_direction == "in" and t.status == "open" %}<span class="sr-only">Customer wrote last: </span>{% elif t.last_direction == "out" %}<span class="sent">You:</span> {% endif %}{{ t.last_body|default:""|truncatechars:140 }}</span>
    </a>
  </li>
  {% endwith %}
{% endfor %}"""
)
PYTHON_ROWS = Template("{% load desk_inbox %}{% inbox_rows tickets %}")

SCRIPT = "<script>alert('x')</script> & \"co\""
BODIES = [
    SCRIPT,
    "",
    "a" * 140,  # exactly the limit: kept whole
    "b" * 141,  # one over: cut with an ellipsis
    "Cafe\u0301 " * 40,  # combining accents: NFC first, then counted
    "e\u0301" * 150,  # 150 visible characters in 300 code points
    "line one\nline two",
]


def collapsed(html: str) -> str:
    return re.sub(r"\s+", " ", html).strip()


def fill(agent: object) -> None:
    """Tickets in every state a row shows: open and closed, read and unread,
    assigned or not, opted out, each kind of last message, odd text."""
    now = timezone.now()
    other = get_user_model().objects.create_user("<b>bea</b> & co")
    for n, body in enumerate(BODIES * 3):
        contact = Contact.objects.create(
            phone=f"+3161000{n:04d}",
            name=SCRIPT if n % 4 == 0 else ("" if n % 4 == 1 else f"Customer {n}"),
            opted_out_at=now if n % 5 == 0 else None,
        )
        ticket = Ticket.objects.create(
            ref=f"R{n:05d}",
            contact=contact,
            status=Ticket.Status.CLOSED if n % 3 == 0 else Ticket.Status.OPEN,
            current=n % 3 != 0,
            assignee=[None, agent, other][n % 3],
            last_message_at=now - timedelta(hours=n * 7),
        )
        if n % 6 == 5:
            continue  # no messages at all: no preview
        direction = [Message.Direction.IN, Message.Direction.OUT, Message.Direction.OUT][n % 3]
        Message.objects.create(
            ticket=ticket,
            direction=direction,
            body=body,
            author=None if direction == Message.Direction.IN else agent,
        )
        if n % 2:
            TicketRead.objects.create(ticket=ticket, agent=agent, read_at=now)


@pytest.mark.parametrize("status", ["open", "closed", "all"])
def test_the_rows_read_as_the_template_rows_did(
    agent_client: Client, agent: object, status: str
) -> None:
    fill(agent)
    response = agent_client.get(f"/admin/?status={status}")
    context = Context({"tickets": response.context["tickets"]})
    assert len(context["tickets"]) > 3
    expected = collapsed(TEMPLATE_ROWS.render(context))
    assert collapsed(PYTHON_ROWS.render(context)) == expected
    assert expected in collapsed(response.content.decode())


def test_names_and_texts_are_escaped_in_the_list(agent_client: Client, agent: object) -> None:
    contact = Contact.objects.create(phone="+31612345678", name="<script>x()</script> & Sons")
    ticket = Ticket.objects.create(ref="ESC123", contact=contact)
    Message.objects.create(ticket=ticket, direction=Message.Direction.IN, body="<b>1 & 2</b>")
    for url in ["/admin/", "/admin/?fragment=list"]:
        body = agent_client.get(url).content.decode()
        assert "&lt;script&gt;x()&lt;/script&gt; &amp; Sons" in body
        assert "&lt;b&gt;1 &amp; 2&lt;/b&gt;" in body
        assert "<script>x()" not in body and "<b>1" not in body


def test_the_live_list_fragment_carries_the_rows(agent_client: Client, agent: object) -> None:
    fill(agent)
    full = collapsed(agent_client.get("/admin/").content.decode())
    fragment = collapsed(agent_client.get("/admin/?fragment=list").content.decode())
    assert fragment.startswith('<div class="ticket-list" data-live-fragment="list">')
    assert fragment.count("data-row") == Ticket.objects.filter(status="open").count()
    assert fragment in full
