"""STOP, START and HELP: opting out blocks every further SMS; the texts stay in the ticket."""

from __future__ import annotations

import pytest
from django.test import Client

from smsdesk.desk.models import Contact, Message, ReplyRefused, Ticket
from smsdesk.desk.worker import clear_to_send, process_inbound
from smsdesk.sms.models import InboundEvent
from smsdesk.sms.providers import InboundSms
from tests.conftest import drain

pytestmark = pytest.mark.django_db(transaction=True)

CUSTOMER = "+31612345678"
keys = iter(range(10**6))


def text(body: str, sender: str = CUSTOMER) -> None:
    InboundEvent.record(
        "messagebird",
        InboundSms(sender=sender, recipient="", text=body, key=f"k{next(keys)}"),
        raw={},
    )
    drain()


def outbound() -> list[tuple[str, str, str]]:
    return [
        (m.purpose, m.body, m.status)
        for m in Message.objects.filter(direction="out").order_by("created", "id")
    ]


@pytest.mark.parametrize("stop", ["STOP", " stop ", "Opt Out", "opt  out", "UNSUBSCRIBE", "Quit"])
def test_a_stop_text_opts_the_contact_out_with_one_answer(stop: str, settings) -> None:  # type: ignore[no-untyped-def]
    text("Where is my parcel?")
    text(stop)
    contact = Contact.objects.get()
    assert contact.opted_out_at is not None
    assert contact.opt_out_message is not None and contact.opt_out_message.body == stop
    # The keyword itself lands in the ticket like any text.
    ticket = Ticket.objects.get()
    assert list(ticket.messages.filter(direction="in").values_list("body", flat=True)) == [
        "Where is my parcel?",
        stop,
    ]
    assert outbound()[-1] == ("opt-out", settings.SMSDESK_OPT_OUT_TEXT, "sent")
    text("STOP")
    assert [purpose for purpose, _, _ in outbound()] == ["confirmation", "opt-out"]


@pytest.mark.parametrize("body", ["stop please", "Don't stop", "STOP!", "help me"])
def test_a_keyword_inside_a_sentence_is_an_ordinary_text(body: str) -> None:
    text(body)
    assert Contact.objects.get().opted_out_at is None
    assert [purpose for purpose, _, _ in outbound()] == ["confirmation"]


def test_a_first_text_of_stop_gets_no_ticket_confirmation() -> None:
    text("STOP")
    assert Ticket.objects.get().messages.filter(direction="in").count() == 1
    assert [purpose for purpose, _, _ in outbound()] == ["opt-out"]


def test_an_opted_out_contact_gets_no_reply_and_the_agent_is_told_why(agent) -> None:  # type: ignore[no-untyped-def]
    text("Hello")
    text("stop")
    ticket = Ticket.objects.get()
    with pytest.raises(ReplyRefused, match="texted STOP"):
        ticket.reply("Are you sure?", author=agent)
    client = Client()
    client.force_login(agent)
    response = client.post(f"/admin/tickets/{ticket.ref}/reply", {"body": "Are you sure?"})
    assert response.status_code == 400
    assert "until they text START" in response.content.decode()
    assert not Message.objects.filter(body="Are you sure?").exists()
    inbox = client.get("/admin/").content.decode()
    assert "Opted out" in inbox


def test_texts_queued_before_the_stop_are_cancelled_not_sent(agent) -> None:  # type: ignore[no-untyped-def]
    text("Hello")
    ticket = Ticket.objects.get()
    reply = ticket.reply("We are looking into it", author=agent)
    text("STOP")  # threaded before the reply is sent: the worker threads first
    reply.refresh_from_db()
    assert reply.status == Message.Status.CANCELLED
    assert "STOP" in reply.last_error
    assert reply.sent_at is None


def test_a_text_claimed_after_an_opt_out_is_cancelled_at_the_worker(agent) -> None:  # type: ignore[no-untyped-def]
    """The last guard: whatever queued it, the worker sends nothing to an opted-out number."""
    text("Hello")
    reply = Ticket.objects.get().reply("On it", author=agent)
    # As if another worker's STOP committed between this reply's queueing and its claim.
    Contact.objects.update(opted_out_at=reply.created)
    drain()
    reply.refresh_from_db()
    assert reply.status == Message.Status.CANCELLED


def test_a_stop_threaded_between_the_claim_and_the_send_cancels_the_reply(agent) -> None:  # type: ignore[no-untyped-def]
    """Another worker threads the STOP after this one claimed the reply, before it sends.

    The check before sending must see the STOP either waiting in the journal
    or already recorded as an opt-out; it once read the two in separate
    queries, and a STOP committed between them let the reply through.
    Since the claim reads both at once, the reply is held for the threading
    and then cancelled.
    """
    text("Hello")
    reply = Ticket.objects.get().reply("On it", author=agent)
    InboundEvent.record(
        "messagebird", InboundSms(sender=CUSTOMER, recipient="", text="STOP", key="stop"), raw={}
    )
    claimed = Message.claim_due(10)
    assert [message.pk for message in claimed] == [reply.pk]
    assert process_inbound() == 1  # the other worker, committing the STOP

    assert clear_to_send(claimed) == []  # held: the claim saw the STOP waiting in the journal
    drain()
    reply.refresh_from_db()
    assert reply.status == Message.Status.CANCELLED
    assert reply.sent_at is None


def test_start_opts_back_in_and_replies_go_again(agent, settings) -> None:  # type: ignore[no-untyped-def]
    text("Hello")
    text("STOP")
    text("start")
    contact = Contact.objects.get()
    assert contact.opted_out_at is None and contact.opt_out_message is None
    assert outbound()[-1] == ("opt-in", settings.SMSDESK_OPT_IN_TEXT, "sent")
    Ticket.objects.get().reply("Welcome back", author=agent)
    drain()
    assert outbound()[-1] == ("", "Welcome back", "sent")


def test_start_from_a_subscribed_contact_is_just_a_text() -> None:
    text("Hello")
    text("YES")
    assert [purpose for purpose, _, _ in outbound()] == ["confirmation"]


def test_help_gets_the_help_text(settings) -> None:  # type: ignore[no-untyped-def]
    text("Hello")
    text("HELP")
    assert outbound()[-1] == ("help", settings.SMSDESK_HELP_TEXT, "sent")
    settings.SMSDESK_HELP_TEXT = ""
    text("info")
    assert [purpose for purpose, _, _ in outbound()] == ["confirmation", "help"]


def test_the_opt_out_answer_can_be_switched_off(settings) -> None:  # type: ignore[no-untyped-def]
    settings.SMSDESK_OPT_OUT_TEXT = ""
    text("Hello")
    text("STOP")
    assert Contact.objects.get().opted_out_at is not None
    assert [purpose for purpose, _, _ in outbound()] == ["confirmation"]


def test_stop_and_start_in_one_batch_leave_the_last_word(settings) -> None:  # type: ignore[no-untyped-def]
    for n, body in enumerate(["Hello", "STOP", "START"]):
        InboundEvent.record(
            "messagebird", InboundSms(sender=CUSTOMER, recipient="", text=body, key=f"b{n}"), raw={}
        )
    drain()
    assert Contact.objects.get().opted_out_at is None
    assert [purpose for purpose, _, _ in outbound()] == ["confirmation", "opt-in"]


def test_the_ticket_page_says_why_there_is_no_reply_box(agent, settings) -> None:  # type: ignore[no-untyped-def]
    text("Hello")
    reply = Ticket.objects.get().reply("Checking", author=agent)
    Contact.objects.update(opted_out_at=reply.created)
    drain()
    client = Client()
    client.force_login(agent)
    page = client.get(f"/admin/tickets/{Ticket.objects.get().ref}").content.decode()
    assert "opted out</strong> by texting STOP" in page
    assert 'action="/admin/tickets/' in page and "/reply" not in page.split("opted out</strong>")[1]
    assert "Not sent: The customer texted STOP before it was sent." in page
    assert 'status-cancelled">Cancelled' in page
