"""The worker's scans start at its floors, and a full look finds what waits below them."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from smsdesk.desk import worker
from smsdesk.desk.models import Contact, Message, Ticket, new_ref
from smsdesk.sms.models import InboundEvent
from tests.desk.workers import WAIT, text, worker_running

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_full_look_sets_each_floor_a_slack_before_what_waits_first_or_before_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker, "FULL_LOOK", 0.0)  # every look from the indexes' start
    floors = worker.Floors()
    before = timezone.now()
    assert not floors.look()
    for floor in (floors.journal, floors.outbox):
        assert floor is not None
        assert before - worker.FLOOR_SLACK <= floor <= timezone.now() - worker.FLOOR_SLACK

    an_hour_ago = timezone.now() - timedelta(hours=1)
    old = text("+31644440001", "hi", "old")
    InboundEvent.objects.filter(pk=old.pk).update(received_at=an_hour_ago)
    ticket = Ticket.objects.create(ref=new_ref(), contact=Contact.objects.create(phone="+3164"))
    reply = ticket.reply("On its way", author=None)
    a_minute_ago = timezone.now() - timedelta(minutes=1)
    Message.objects.filter(pk=reply.pk).update(next_attempt_at=a_minute_ago)

    assert floors.look()
    assert floors.journal == an_hour_ago - worker.FLOOR_SLACK
    assert floors.outbox == a_minute_ago - worker.FLOOR_SLACK


def test_a_look_from_the_floors_raises_them_to_what_waits_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker, "FULL_LOOK", 3600.0)
    floors = worker.Floors()
    assert not floors.look()  # the first look is from the start
    assert floors.journal is not None
    first = floors.journal

    old = text("+31644440006", "hi", "old")
    InboundEvent.objects.filter(pk=old.pk).update(received_at=first - timedelta(minutes=1))
    assert not floors.look()  # below the floor: left for the next full look
    later = text("+31644440007", "hi", "later")
    assert floors.look()
    assert floors.journal == later.received_at - worker.FLOOR_SLACK
    assert floors.journal > first


def test_claims_and_looks_from_a_floor_leave_what_waits_below_it() -> None:
    old = text("+31644440002", "hi", "below")
    InboundEvent.objects.filter(pk=old.pk).update(received_at=timezone.now() - timedelta(hours=1))
    ticket = Ticket.objects.create(ref=new_ref(), contact=Contact.objects.create(phone="+3164"))
    reply = ticket.reply("On its way", author=None)
    Message.objects.filter(pk=reply.pk).update(
        next_attempt_at=timezone.now() - timedelta(minutes=1)
    )
    floor = timezone.now() - worker.FLOOR_SLACK

    assert not worker.work_waiting(floor, floor)
    assert worker.process_inbound(since=floor) == 0
    assert worker.send_due(since=floor) == 0
    assert worker.work_waiting()
    assert worker.process_inbound() == 1
    assert worker.send_due() == 2  # the reply, and the confirmation of the text


def test_a_text_handed_back_below_the_floor_is_threaded_at_the_next_full_look(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker, "FULL_LOOK", 3600.0)
    failed = text("+31644440003", "hi", "failed")
    InboundEvent.objects.filter(pk=failed.pk).update(
        received_at=timezone.now() - timedelta(hours=1), error="RuntimeError: a bug since fixed"
    )
    with worker_running():
        # The worker's first look is a full one; by this text's ticket it is done.
        assert threaded(text("+31644440004", "hi", "first"))

        call_command("reprocess", str(failed.pk))  # an operator hands the text back
        assert threaded(text("+31644440005", "hi", "next"))
        assert not threaded(failed, within=0)  # below the floor, for now

        monkeypatch.setattr(worker, "FULL_LOOK", 0.05)
        assert threaded(failed)  # at the next look, once a FULL_POLL
    assert Ticket.objects.filter(contact__phone="+31644440003").exists()


def threaded(event: InboundEvent, within: float = WAIT) -> bool:
    for _ in range(max(int(within / 0.05), 1)):
        event.refresh_from_db()
        if event.processed_at is not None:
            return True
        threading.Event().wait(0.05)
    return False
