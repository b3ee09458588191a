"""Which ticket a text joins: the reopen window, quoted refs, split and merge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from smsdesk.desk.models import Contact, Message, ReplyRefused, Ticket
from smsdesk.sms.models import InboundEvent
from smsdesk.sms.providers import InboundSms
from tests.conftest import drain

pytestmark = pytest.mark.django_db(transaction=True)

CUSTOMER = "+31612345678"
OTHER = "+447700900123"
keys = iter(range(10**6))


def text(body: str, sender: str = CUSTOMER) -> InboundEvent:
    key = f"k{next(keys)}"
    InboundEvent.record(
        "messagebird", InboundSms(sender=sender, recipient="", text=body, key=key), raw={}
    )
    drain()
    return InboundEvent.objects.get(key=key)


def confirmations(ticket: Ticket) -> int:
    return ticket.messages.filter(purpose="confirmation").count()


def closed_ago(ticket: Ticket, age: timedelta) -> None:
    ticket.close()
    Ticket.objects.filter(pk=ticket.pk).update(closed_at=timezone.now() - age)


def first_ticket(sender: str = CUSTOMER) -> Ticket:
    text("My parcel is late", sender)
    return Ticket.objects.get(contact__phone=sender)


# The reopen window


def test_a_text_within_the_window_reopens_the_ticket_without_a_confirmation() -> None:
    ticket = first_ticket()
    closed_ago(ticket, timedelta(days=6, hours=23))
    text("It came, but broken")
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.OPEN and ticket.closed_at is None
    assert Ticket.objects.count() == 1
    assert confirmations(ticket) == 1
    assert ticket.messages.filter(body="It came, but broken").exists()


@pytest.mark.parametrize(
    ("age", "reopened"),
    [
        (timedelta(days=7) - timedelta(seconds=5), True),
        (timedelta(days=7) + timedelta(seconds=5), False),
    ],
)
def test_the_window_edge(age: timedelta, reopened: bool) -> None:
    ticket = first_ticket()
    closed_ago(ticket, age)
    event = text("Hello again")
    message = Message.objects.get(event=event)
    assert (message.ticket_id == ticket.pk) is reopened
    if not reopened:
        new = message.ticket
        assert new.status == Ticket.Status.OPEN and new.current
        assert confirmations(new) == 1
        ticket.refresh_from_db()
        assert (ticket.status, ticket.current) == (Ticket.Status.CLOSED, False)


def test_the_window_is_measured_from_the_texts_arrival_not_from_threading(settings) -> None:  # type: ignore[no-untyped-def]
    settings.SMSDESK_REOPEN_WINDOW = timedelta(hours=1)
    ticket = first_ticket()
    ticket.close()
    InboundEvent.record(
        "messagebird", InboundSms(sender=CUSTOMER, recipient="", text="Late", key="late"), raw={}
    )
    # Threaded two hours after it arrived (say the worker was down): still within the window.
    Ticket.objects.filter(pk=ticket.pk).update(closed_at=timezone.now() - timedelta(minutes=30))
    InboundEvent.objects.filter(key="late").update(
        received_at=timezone.now() - timedelta(minutes=10)
    )
    drain()
    assert Message.objects.get(body="Late").ticket_id == ticket.pk


def test_the_window_is_configurable(settings) -> None:  # type: ignore[no-untyped-def]
    settings.SMSDESK_REOPEN_WINDOW = timedelta(0)
    ticket = first_ticket()
    ticket.close()
    text("Hello again")
    assert Ticket.objects.count() == 2


# Quoted refs


@pytest.mark.parametrize(
    "quote", ["#{ref} it broke again", "{ref}", "{lower} any news?", "Re #{ref}"]
)
def test_quoting_an_earlier_tickets_ref_routes_there(quote: str) -> None:
    old = first_ticket()
    closed_ago(old, timedelta(days=30))
    text("A new problem")
    new = Ticket.objects.get(current=True)
    assert new.pk != old.pk
    body = quote.format(ref=old.ref, lower=old.ref.lower())
    text(body)
    message = Message.objects.get(body=body)
    assert message.ticket_id == old.pk
    old.refresh_from_db()
    assert old.status == Ticket.Status.OPEN  # reopened, without a confirmation
    assert confirmations(old) == 1
    # Unquoted texts still go to the current ticket.
    text("And another thing")
    assert Message.objects.get(body="And another thing").ticket_id == new.pk


def test_a_ref_of_another_customers_ticket_is_ignored() -> None:
    theirs = first_ticket(OTHER)
    mine = first_ticket(CUSTOMER)
    text(f"#{theirs.ref} let me in")
    message = Message.objects.get(body=f"#{theirs.ref} let me in")
    assert message.ticket_id == mine.pk
    assert not theirs.messages.filter(body__contains="let me in").exists()


def test_a_word_that_is_not_one_of_their_refs_threads_as_usual() -> None:
    ticket = first_ticket()
    text("THANKS a lot")
    assert Message.objects.get(body="THANKS a lot").ticket_id == ticket.pk
    assert Ticket.objects.count() == 1


# Split and merge


@pytest.fixture
def agent_browser(agent) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(agent)
    return client


def test_an_agent_splits_a_message_off_into_a_new_ticket(agent_browser: Client) -> None:
    ticket = first_ticket()
    text("Also, my invoice is wrong")
    moved = Message.objects.get(body="Also, my invoice is wrong")
    response = agent_browser.post(f"/admin/tickets/{ticket.ref}/split", {"message": moved.uuid})
    moved.refresh_from_db()
    split = moved.ticket
    assert split.pk != ticket.pk and split.contact_id == ticket.contact_id
    assert response["Location"] == f"/admin/tickets/{split.ref}"
    assert (split.status, split.current) == (Ticket.Status.OPEN, False)
    assert list(split.messages.values_list("body", flat=True)) == ["Also, my invoice is wrong"]
    assert not ticket.messages.filter(pk=moved.pk).exists()
    # The customer's next text goes to the ticket that was current.
    text("Thanks!")
    assert Message.objects.get(body="Thanks!").ticket_id == ticket.pk
    # Split tickets answer replies like any other.
    split.reply("We fixed the invoice", author=None)


def test_a_split_needs_a_message_of_this_ticket_and_leaves_one_behind(
    agent_browser: Client,
) -> None:
    ticket = first_ticket()
    other = first_ticket(OTHER)
    foreign = other.messages.get(direction="in")
    response = agent_browser.post(
        f"/admin/tickets/{ticket.ref}/split", {"message": foreign.uuid}, follow=True
    )
    assert "not in this ticket" in response.content.decode()
    only = Ticket.objects.get(pk=ticket.pk)
    Message.objects.filter(ticket=only).exclude(direction="in").delete()
    lone = only.messages.get()
    with pytest.raises(ReplyRefused, match="one message"):
        only.split_off(lone)
    garbled = agent_browser.post(
        f"/admin/tickets/{ticket.ref}/split", {"message": "nope"}, follow=True
    )
    assert garbled.status_code == 200
    assert Ticket.objects.count() == 2


def test_merging_moves_everything_and_later_texts_follow_the_survivor(
    agent_browser: Client,
) -> None:
    old = first_ticket()
    closed_ago(old, timedelta(days=30))
    text("Second problem")
    current = Ticket.objects.get(current=True)
    # Merge the current ticket into the old one: the old one survives.
    response = agent_browser.post(f"/admin/tickets/{current.ref}/merge", {"into": old.ref})
    assert response["Location"] == f"/admin/tickets/{old.ref}"
    old.refresh_from_db()
    current.refresh_from_db()
    assert (old.status, old.current) == (Ticket.Status.OPEN, True)
    assert (current.status, current.current, current.merged_into_id) == ("closed", False, old.pk)
    bodies = set(old.messages.filter(direction="in").values_list("body", flat=True))
    assert bodies == {"My parcel is late", "Second problem"}
    assert not current.messages.exists()
    text("Hello?")
    assert Message.objects.get(body="Hello?").ticket_id == old.pk
    # Quoting the merged ticket's ref leads to the survivor too.
    text(f"#{current.ref} still there?")
    assert Message.objects.get(body=f"#{current.ref} still there?").ticket_id == old.pk
    page = agent_browser.get(f"/admin/tickets/{current.ref}").content.decode()
    assert f'merged into <a href="/admin/tickets/{old.ref}">#{old.ref}</a>' in page


def test_only_the_same_customers_tickets_merge(agent_browser: Client) -> None:
    mine = first_ticket()
    theirs = first_ticket(OTHER)
    response = agent_browser.post(
        f"/admin/tickets/{mine.ref}/merge", {"into": theirs.ref}, follow=True
    )
    assert "same customer" in response.content.decode()
    assert (
        agent_browser.post(f"/admin/tickets/{mine.ref}/merge", {"into": mine.ref}).status_code
        == 302
    )
    mine.refresh_from_db()
    assert mine.merged_into_id is None and mine.messages.count() == 2
    missing = agent_browser.post(f"/admin/tickets/{mine.ref}/merge", {"into": "../x"}, follow=True)
    assert "Choose a ticket" in missing.content.decode()
    assert Contact.objects.count() == 2


# Business hours


def test_outside_business_hours_the_confirmation_says_when_we_open(settings) -> None:  # type: ignore[no-untyped-def]
    settings.SMSDESK_BUSINESS_HOURS = "Mon-Fri 09:00-17:00"
    settings.SMSDESK_BUSINESS_TIME_ZONE = "Europe/Amsterdam"
    InboundEvent.record(
        "messagebird", InboundSms(sender=CUSTOMER, recipient="", text="Hi", key="sat"), raw={}
    )
    # Saturday 5 December 2026, 12:00 in Amsterdam.
    saturday = datetime(2026, 12, 5, 11, 0, tzinfo=UTC)
    InboundEvent.objects.filter(key="sat").update(received_at=saturday)
    drain()
    ticket = Ticket.objects.get()
    confirmation = ticket.messages.get(purpose="confirmation").body
    assert confirmation == (
        f"Thanks for contacting customer support! Your ticket ID is {ticket.ref}. "
        "We are closed now and will reply from Monday 09:00."
    )


def test_inside_business_hours_the_confirmation_is_plain(settings) -> None:  # type: ignore[no-untyped-def]
    settings.SMSDESK_BUSINESS_HOURS = "Mon-Sun 00:00-24:00"
    ticket = first_ticket()
    assert ticket.messages.get(purpose="confirmation").body.endswith(f"ID is {ticket.ref}.")


def test_bad_business_hours_stop_the_desk_at_start_up(settings) -> None:  # type: ignore[no-untyped-def]
    from django.core.checks import run_checks

    settings.SMSDESK_BUSINESS_HOURS = "Weekdays 9 to 5"
    errors = [e for e in run_checks() if e.id == "smsdesk.E005"]
    assert errors and "SMSDESK_BUSINESS_HOURS" in errors[0].msg
