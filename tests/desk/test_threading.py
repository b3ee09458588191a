"""Threading rules: which ticket an inbound text joins, and when a confirmation goes out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from smsdesk.desk.models import Message, ReplyRefused, Ticket
from smsdesk.sms.models import InboundEvent
from smsdesk.sms.providers import InboundSms
from tests.conftest import drain

pytestmark = pytest.mark.django_db(transaction=True)


def text(sender: str, body: str, key: str) -> None:
    InboundEvent.record(
        "messagebird", InboundSms(sender=sender, recipient="", text=body, key=key), raw={}
    )


def thread(ticket: Ticket) -> list[tuple[str, str]]:
    return [(m.direction, m.body) for m in ticket.messages.order_by("created", "id")]


def test_it_opens_a_ticket_and_sends_one_confirmation_for_a_new_number() -> None:
    text("+31612345678", "Hello", "m1")
    drain()
    ticket = Ticket.objects.get()
    assert ticket.contact.phone == "+31612345678"
    assert ticket.status == Ticket.Status.OPEN
    assert thread(ticket) == [
        ("in", "Hello"),
        ("out", f"Thanks for contacting customer support! Your ticket ID is {ticket.ref}."),
    ]
    assert ticket.messages.get(direction="out").status == Message.Status.SENT
    assert InboundEvent.objects.get().processed_at is not None


def test_it_adds_later_texts_to_the_open_ticket_without_another_confirmation() -> None:
    text("+31612345678", "Hello", "m1")
    drain()
    text("+31612345678", "Are you there?", "m2")
    text("+31612345678", "Order 1234", "m3")
    drain()
    ticket = Ticket.objects.get()
    assert [body for direction, body in thread(ticket) if direction == "in"] == [
        "Hello",
        "Are you there?",
        "Order 1234",
    ]
    assert ticket.messages.filter(direction="out").count() == 1


def test_it_keeps_numbers_apart() -> None:
    text("+31612345678", "one", "m1")
    text("+31687654321", "two", "m2")
    drain()
    assert Ticket.objects.count() == 2
    assert Message.objects.filter(direction="out").count() == 2


def test_it_orders_the_thread_by_arrival_not_by_processing() -> None:
    text("+31612345678", "first", "m1")
    text("+31612345678", "second", "m2")
    first, second = InboundEvent.objects.order_by("id")
    # Arrival is the journal's received_at; make the second event arrive first.
    InboundEvent.objects.filter(pk=second.pk).update(
        received_at=first.received_at - timedelta(seconds=5)
    )
    drain()
    ticket = Ticket.objects.get()
    assert [body for direction, body in thread(ticket) if direction == "in"] == ["second", "first"]


def test_it_moves_the_ticket_to_the_top_of_the_inbox_when_a_text_arrives() -> None:
    text("+31612345678", "one", "m1")
    drain()
    ticket = Ticket.objects.get()
    before = ticket.last_message_at
    text("+31612345678", "two", "m2")
    drain()
    ticket.refresh_from_db()
    assert ticket.last_message_at > before


def test_it_opens_a_new_ticket_with_a_new_confirmation_once_the_reopen_window_has_passed() -> None:
    text("+31612345678", "Hello", "m1")
    drain()
    old = Ticket.objects.get()
    old.close()
    Ticket.objects.filter(pk=old.pk).update(closed_at=timezone.now() - timedelta(days=8))
    text("+31612345678", "Me again", "m2")
    drain()
    new = Ticket.objects.exclude(pk=old.pk).get()
    assert new.ref != old.ref
    assert thread(new) == [
        ("in", "Me again"),
        ("out", f"Thanks for contacting customer support! Your ticket ID is {new.ref}."),
    ]


def test_it_uses_the_configured_confirmation_text(settings) -> None:  # type: ignore[no-untyped-def]
    settings.SMSDESK_CONFIRMATION_TEXT = "We got it. Ref {ref}; reply here any time."
    text("+31612345678", "Hello", "m1")
    drain()
    ticket = Ticket.objects.get()
    assert (
        ticket.messages.get(direction="out").body
        == f"We got it. Ref {ticket.ref}; reply here any time."
    )


def test_it_gives_refs_from_an_unambiguous_alphabet() -> None:
    for n in range(40):
        text(f"+316123456{n:02d}", "hi", f"m{n}")
    drain()
    refs = list(Ticket.objects.values_list("ref", flat=True))
    assert len(set(refs)) == 40
    for ref in refs:
        assert len(ref) == 6
        assert not set(ref) & set("01OILU")


def test_it_sends_no_confirmation_to_an_alphanumeric_sender_and_refuses_replies() -> None:
    text("Amazon", "Your parcel is on its way", "m1")
    drain()
    ticket = Ticket.objects.get()
    assert thread(ticket) == [("in", "Your parcel is on its way")]
    with pytest.raises(ReplyRefused, match="cannot receive SMS"):
        ticket.reply("Thanks!", author=None)
    assert not Message.objects.filter(direction="out").exists()


def test_a_failing_event_keeps_its_error_and_can_be_reprocessed(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    text("+31612345678", "Hello", "m1")
    text("+31687654321", "Other", "m2")

    def broken_queue(*args: object, **kwargs: object) -> None:
        raise RuntimeError("outbox unavailable")

    # Fault injection: the confirmation cannot be queued for the first pass.
    monkeypatch.setattr(Message, "queue_all", broken_queue)
    drain()
    failed = InboundEvent.objects.exclude(error="")
    assert failed.count() == 2
    assert all("outbox unavailable" in event.error for event in failed)
    assert all(event.processed_at is None for event in failed)
    # Nothing half-done is left behind by the failed passes.
    assert not Ticket.objects.exists()
    assert not Message.objects.exists()

    monkeypatch.undo()
    call_command("reprocess", "--all")
    drain()
    assert Ticket.objects.count() == 2
    assert not InboundEvent.objects.exclude(error="").exists()
    assert InboundEvent.objects.filter(processed_at__isnull=True).count() == 0


def test_reprocess_by_id_requeues_only_that_event(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    text("+31612345678", "Hello", "m1")
    text("+31687654321", "Other", "m2")
    monkeypatch.setattr(
        Message, "queue_all", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom"))
    )
    drain()
    monkeypatch.undo()
    first = InboundEvent.objects.order_by("id").first()
    assert first is not None
    call_command("reprocess")
    assert "2 failed event(s)" in capsys.readouterr().out
    call_command("reprocess", str(first.pk))
    drain()
    assert Ticket.objects.get().contact.phone == first.sender
    assert InboundEvent.objects.exclude(error="").count() == 1


def test_closing_and_reopening_a_ticket() -> None:
    text("+31612345678", "Hello", "m1")
    drain()
    ticket = Ticket.objects.get()
    ticket.close()
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.CLOSED
    assert ticket.closed_at is not None and ticket.closed_at <= timezone.now()
    ticket.reopen()
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.OPEN
    assert ticket.closed_at is None


def test_an_agent_may_reopen_an_older_ticket_beside_a_newer_open_one() -> None:
    text("+31612345678", "Hello", "m1")
    drain()
    old = Ticket.objects.get()
    old.close()
    Ticket.objects.filter(pk=old.pk).update(closed_at=timezone.now() - timedelta(days=8))
    text("+31612345678", "New problem", "m2")
    drain()
    new = Ticket.objects.exclude(pk=old.pk).get()
    old.reopen()
    old.refresh_from_db()
    new.refresh_from_db()
    assert old.status == new.status == Ticket.Status.OPEN
    # The customer's texts keep going to the newer ticket.
    assert (old.current, new.current) == (False, True)
    text("+31612345678", "Any news?", "m3")
    drain()
    assert new.messages.filter(body="Any news?").exists()
