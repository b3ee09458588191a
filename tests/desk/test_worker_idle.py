"""The idle worker: one cheap query per poll, and a pass only when there is work.

And a worker that finds little: it lets more gather, and looks before it claims.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from smsdesk.desk import worker
from smsdesk.desk.models import Contact, Message, Ticket, new_ref
from smsdesk.sms.models import InboundEvent
from tests.desk.workers import WAIT, text, wait_until_threaded, worker_running

pytestmark = pytest.mark.django_db(transaction=True)


def test_work_waiting_sees_pending_texts_and_due_messages_and_nothing_else() -> None:
    assert not worker.work_waiting()

    event = text("+31611111111", "hi", "one")
    assert worker.work_waiting()
    InboundEvent.objects.filter(pk=event.pk).update(processed_at=timezone.now())
    assert not worker.work_waiting()
    InboundEvent.objects.filter(pk=event.pk).update(processed_at=None, error="ValueError: bad")
    assert not worker.work_waiting()  # left for an operator, as pending() leaves it

    ticket = Ticket.objects.create(ref=new_ref(), contact=Contact.objects.create(phone="+3161"))
    reply = ticket.reply("On its way", author=None)
    assert worker.work_waiting()
    later = timezone.now() + timedelta(minutes=5)
    Message.objects.filter(pk=reply.pk).update(next_attempt_at=later)  # a retry, backing off
    assert not worker.work_waiting()
    Message.objects.filter(pk=reply.pk).update(
        status=Message.Status.SENDING, next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    assert worker.work_waiting()  # a claim whose lease ran out
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.SENT, next_attempt_at=None)
    assert not worker.work_waiting()


def counted_looks(monkeypatch: pytest.MonkeyPatch) -> threading.Semaphore:
    """Released each time the worker looks for work (first_waiting)."""
    looks = threading.Semaphore(0)
    real_waiting = worker.first_waiting

    def waiting(*floors: datetime | None) -> tuple[datetime | None, datetime | None]:
        found = real_waiting(*floors)
        looks.release()
        return found

    monkeypatch.setattr(worker, "first_waiting", waiting)
    return looks


def test_an_idle_worker_runs_no_pass_until_work_arrives(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = counted_looks(monkeypatch)
    passes: list[int] = []
    real_inbound = worker.process_inbound

    def inbound(limit: int = worker.BATCH, since: datetime | None = None) -> int:
        passes.append(real_inbound(limit, since))
        return passes[-1]

    monkeypatch.setattr(worker, "process_inbound", inbound)
    monkeypatch.setattr(worker, "IDLE_WAIT", 0.01)
    monkeypatch.setattr(worker, "FULL_POLL", 0.01)
    with worker_running():
        for _ in range(5):
            assert checks.acquire(timeout=WAIT)
        assert passes == []  # five polls, not one pass

        text("+31622222222", "hi", "two")
        wait_until_threaded()
    assert not InboundEvent.pending().exists()
    assert passes[0] == 1
    assert Ticket.objects.filter(contact__phone="+31622222222").exists()


def test_an_idle_worker_looks_for_work_only_after_a_new_row_or_a_full_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checks = counted_looks(monkeypatch)
    monkeypatch.setattr(worker, "FULL_POLL", 3600.0)
    ticket = Ticket.objects.create(ref=new_ref(), contact=Contact.objects.create(phone="+3163"))
    with worker_running():
        assert checks.acquire(timeout=WAIT)  # the first poll looks
        # Many polls (IDLE_WAIT apart), and not one look among them.
        assert not checks.acquire(timeout=20 * worker.IDLE_WAIT)

        text("+31633333333", "hi", "three")  # a new journal row
        wait_until_threaded()
        assert Ticket.objects.filter(contact__phone="+31633333333").exists()

        reply = ticket.reply("On its way", author=None)  # a new message row
        assert sent(reply)

        # A retry coming due is no new row: only a full poll finds it. Due a
        # second from now, not at once: the worker may still be finishing
        # the pass after the one that sent it, which would find it due.
        later = ticket.reply("And another", author=None)
        assert sent(later)
        Message.objects.filter(pk=later.pk).update(
            status=Message.Status.QUEUED, next_attempt_at=timezone.now() + timedelta(seconds=1)
        )
        assert not sent(later, within=1 + 20 * worker.IDLE_WAIT)
        monkeypatch.setattr(worker, "FULL_POLL", 0.05)
        assert sent(later)


def sent(message: Message, within: float = WAIT) -> bool:
    for _ in range(max(int(within / 0.05), 1)):
        message.refresh_from_db()
        if message.status == Message.Status.SENT:
            return True
        threading.Event().wait(0.05)
    return False


def test_a_pass_that_found_a_few_texts_lets_more_gather_before_the_next() -> None:
    for n in range(worker.GATHER - 1):
        text(f"+3161000000{n}", "hi", f"few-{n}")
    assert worker.work(worker.Burst(), worker.Floors()) == (False, 0.0)

    for n in range(worker.GATHER):
        text(f"+3162000000{n}", "hi", f"many-{n}")
    assert worker.work(worker.Burst(), worker.Floors()) == (True, 0.0)


def test_texts_that_come_after_a_small_pass_are_threaded_together_after_a_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As in `serve`, where webhooks come in other processes and cannot wake the worker."""
    monkeypatch.setattr(worker, "work_available", threading.Event())
    monkeypatch.setattr(worker, "IDLE_WAIT", 0.3)
    monkeypatch.setattr(worker, "FULL_POLL", 3600.0)
    passes: list[tuple[float, float, int]] = []  # (started, ended, texts threaded)
    real_inbound = worker.process_inbound

    def three_more() -> None:
        try:
            for n in range(3):
                text(f"+3163000000{n}", "hi", f"more-{n}")
        finally:
            connection.close()

    later = threading.Timer(0.05, three_more)

    def inbound(limit: int = worker.BATCH, since: datetime | None = None) -> int:
        started = time.monotonic()
        threaded = real_inbound(limit, since)
        passes.append((started, time.monotonic(), threaded))
        if len(passes) == 1:
            later.start()  # while the worker waits
        return threaded

    monkeypatch.setattr(worker, "process_inbound", inbound)
    text("+31630000009", "hi", "first")
    try:
        with worker_running():
            for _ in range(int(WAIT / 0.05)):
                if sum(threaded for _, _, threaded in passes) == 4:
                    break
                threading.Event().wait(0.05)
    finally:
        later.cancel()
        if later.ident is not None:  # started
            later.join(WAIT)
    # Not a pass at once after the first, which would have found nothing yet.
    threaded = [n for _, _, n in passes]
    assert threaded[0] == 1 and sum(threaded) == 4 and 0 not in threaded
    assert passes[1][0] - passes[0][1] >= worker.IDLE_WAIT


def test_a_pass_with_nothing_due_only_looks() -> None:
    ticket = Ticket.objects.create(ref=new_ref(), contact=Contact.objects.create(phone="+3164"))
    reply = ticket.reply("Later", author=None)
    Message.objects.filter(pk=reply.pk).update(next_attempt_at=timezone.now() + timedelta(hours=1))
    with CaptureQueriesContext(connection) as statements:
        assert worker.send_due() == 0
    assert len(statements) == 1
    assert "FOR UPDATE" not in statements[0]["sql"].upper()  # no claim, nothing locked


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's write lock")
def test_a_pass_with_nothing_due_leaves_sqlites_write_lock_to_the_webhooks() -> None:
    held, release, sent = threading.Event(), threading.Event(), []

    def writer() -> None:
        try:
            with transaction.atomic():  # IMMEDIATE: the write lock, until release
                InboundEvent.objects.filter(pk=0).update(error="")
                held.set()
                release.wait(WAIT)
        finally:
            connection.close()

    def send() -> None:
        try:
            sent.append(worker.send_due())
        finally:
            connection.close()

    holding, sending = threading.Thread(target=writer), threading.Thread(target=send)
    holding.start()
    try:
        assert held.wait(WAIT)
        sending.start()
        sending.join(WAIT / 3)
        assert sent == [0]  # done while the writer still held the lock
    finally:
        release.set()
        holding.join(WAIT)
        if sending.ident is not None:  # started
            sending.join(WAIT)
