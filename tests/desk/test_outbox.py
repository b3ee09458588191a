"""The outbox end to end: queued rows reach a fake MessageBird server through the worker."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from smsdesk.desk import worker
from smsdesk.desk.inbound import confirmation_text
from smsdesk.desk.models import Contact, Message, Ticket, new_ref
from smsdesk.sms.models import InboundEvent
from smsdesk.sms.providers import InboundSms
from tests.conftest import drain
from tests.fakes import FakeMessageBird, fake_messagebird_fixture, short_timeout_fixture  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

CUSTOMER = "+31612345678"
WRONG_KEY = {
    "errors": [
        {
            "code": 2,
            "description": "Request not allowed (incorrect access_key)",
            "parameter": "access_key",
        }
    ]
}
BAD_RECIPIENT = {
    "errors": [
        {"code": 10, "description": "no (correct) recipients found", "parameter": "recipient"}
    ]
}


def text_in(body: str = "Hello, my order never arrived", key: str = "m1") -> None:
    InboundEvent.record(
        "messagebird", InboundSms(sender=CUSTOMER, recipient="", text=body, key=key), raw={}
    )


def confirmation() -> Message:
    return Message.objects.get(direction=Message.Direction.OUT)


def make_due(message: Message) -> None:
    Message.objects.filter(pk=message.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def retry_at(message: Message) -> datetime:
    assert message.next_attempt_at is not None, "a queued message always has a next attempt"
    return message.next_attempt_at


def sends_of(fake: FakeMessageBird, message: Message) -> int:
    return fake.references()[str(message.uuid)]


def test_it_sends_the_confirmation_and_an_agent_reply(
    fake_messagebird: FakeMessageBird, agent: Any
) -> None:
    text_in()
    drain()
    ticket = Ticket.objects.get()
    message = confirmation()
    (request,) = fake_messagebird.requests
    assert request.json["recipients"] == [CUSTOMER]
    assert request.json["body"] == confirmation_text(ticket.ref)
    assert request.json["reference"] == str(message.uuid)
    assert message.status == Message.Status.SENT
    assert message.provider == "messagebird"
    assert message.provider_message_id == request.answer_body["id"]
    assert message.sent_at is not None
    assert (message.attempts, message.last_error, message.next_attempt_at) == (1, "", None)

    reply = ticket.reply("It left our warehouse today.", author=agent)
    drain()
    reply.refresh_from_db()
    assert len(fake_messagebird.requests) == 2
    request = fake_messagebird.requests[-1]
    assert (request.json["body"], request.json["reference"]) == (
        "It left our warehouse today.",
        str(reply.uuid),
    )
    assert reply.status == Message.Status.SENT
    assert reply.provider_message_id == request.answer_body["id"]
    assert reply.sent_at is not None


@pytest.mark.parametrize(
    ("status", "body", "description"),
    [
        (401, WRONG_KEY, "Request not allowed (incorrect access_key)"),
        (422, BAD_RECIPIENT, "no (correct) recipients found"),
    ],
)
def test_it_fails_a_refused_message_at_once_and_does_not_retry_it(
    fake_messagebird: FakeMessageBird, status: int, body: dict[str, Any], description: str
) -> None:
    fake_messagebird.respond(status, body)
    text_in()
    drain()
    message = confirmation()
    assert message.status == Message.Status.FAILED
    assert description in message.last_error
    assert (message.attempts, message.next_attempt_at, message.sent_at) == (1, None, None)

    fake_messagebird.recover()
    make_due(message)
    drain()
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert sends_of(fake_messagebird, message) == 1


def test_it_retries_after_a_server_error_and_sends_once_when_messagebird_recovers(
    fake_messagebird: FakeMessageBird,
) -> None:
    fake_messagebird.respond(500)
    text_in()
    before = timezone.now()
    drain()
    after = timezone.now()
    message = confirmation()
    assert message.status == Message.Status.QUEUED
    assert message.attempts == 1
    assert "HTTP 500" in message.last_error
    # The first retry waits backoff(1): between half and all of BACKOFF_BASE.
    assert before + timedelta(seconds=worker.BACKOFF_BASE / 2) <= retry_at(message)
    assert retry_at(message) <= after + timedelta(seconds=worker.BACKOFF_BASE)

    fake_messagebird.recover()
    drain()  # not due yet: nothing goes out
    assert sends_of(fake_messagebird, message) == 1

    make_due(message)
    drain()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.attempts == 2
    assert message.last_error == ""
    assert sends_of(fake_messagebird, message) == 2  # the failed try and the one that worked


def test_it_waits_as_long_as_a_rate_limit_asks(fake_messagebird: FakeMessageBird) -> None:
    fake_messagebird.respond(429, headers={"Retry-After": "120"})
    text_in()
    before = timezone.now()
    drain()
    message = confirmation()
    assert message.status == Message.Status.QUEUED
    assert retry_at(message) >= before + timedelta(seconds=120)
    assert "429" in message.last_error


def test_it_caps_a_rate_limit_wait_too_long_to_honour(fake_messagebird: FakeMessageBird) -> None:
    # 3,000 years: past the last date a timestamp can hold.
    fake_messagebird.respond(429, headers={"Retry-After": "99999999999"})
    text_in()
    drain()
    message = confirmation()
    assert message.status == Message.Status.QUEUED
    assert retry_at(message) <= timezone.now() + timedelta(seconds=worker.RETRY_AFTER_CAP)


@pytest.mark.usefixtures("short_timeout")
def test_it_retries_a_send_that_timed_out(fake_messagebird: FakeMessageBird) -> None:
    fake_messagebird.stall()
    text_in()
    drain()
    message = confirmation()
    assert message.status == Message.Status.QUEUED
    assert message.attempts == 1
    assert "did not answer in time" in message.last_error

    fake_messagebird.recover()
    make_due(message)
    drain()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert sends_of(fake_messagebird, message) == 2


def test_it_never_drops_a_message_during_an_outage(fake_messagebird: FakeMessageBird) -> None:
    fake_messagebird.respond(503)
    text_in()
    drain()
    message = confirmation()
    for _ in range(7):
        make_due(message)
        drain()
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.attempts == 8
    assert retry_at(message) > timezone.now()
    assert sends_of(fake_messagebird, message) == 8

    fake_messagebird.recover()
    make_due(message)
    drain()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT


def test_it_sends_again_a_message_whose_worker_died_mid_send(
    fake_messagebird: FakeMessageBird,
) -> None:
    text_in()
    fake_messagebird.respond(500)
    drain()
    message = confirmation()
    # A worker claimed it and died: the row sits in "sending" and its lease ran out.
    Message.objects.filter(pk=message.pk).update(
        status=Message.Status.SENDING, next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    fake_messagebird.recover()
    drain()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert sends_of(fake_messagebird, message) == 2


def test_it_leaves_alone_a_message_another_worker_is_sending(
    fake_messagebird: FakeMessageBird,
) -> None:
    text_in()
    fake_messagebird.respond(500)
    drain()
    message = confirmation()
    lease_end = timezone.now() + Message.LEASE
    Message.objects.filter(pk=message.pk).update(
        status=Message.Status.SENDING, next_attempt_at=lease_end
    )
    fake_messagebird.recover()
    drain()
    message.refresh_from_db()
    assert message.status == Message.Status.SENDING
    assert message.attempts == 1
    assert sends_of(fake_messagebird, message) == 1


def test_a_slow_send_does_not_hold_up_the_messages_beside_it(
    fake_messagebird: FakeMessageBird,
) -> None:
    ticket = open_ticket()
    first, second, third = (ticket.reply(f"reply {n}", author=None) for n in range(3))
    fake_messagebird.stall()
    slow = threading.Thread(target=in_thread, args=(worker.send_due,))
    slow.start()
    try:
        # All three go out while the first is still unanswered: none of the
        # claimed rows waits behind a slow send while its lease runs down.
        assert fake_messagebird.wait_for_requests(3)
        # They are leased to the first worker, so a second one sends nothing again.
        fake_messagebird.recover()
        assert worker.send_due() == 0
    finally:
        fake_messagebird.release()
        slow.join()
    assert set(Message.objects.values_list("status", flat=True)) == {Message.Status.SENT}
    assert fake_messagebird.references() == {str(m.uuid): 1 for m in (first, second, third)}


def test_a_pass_sends_its_messages_at_once_and_the_next_reuses_their_connections(
    fake_messagebird: FakeMessageBird,
) -> None:
    """Two passes of one worker, each with SENDS_AT_ONCE replies stalled at the fake together."""
    ticket = open_ticket()
    go = [threading.Event(), threading.Event()]

    def two_passes() -> None:
        for turn in go:
            turn.wait(10)
            worker.send_due()

    passes = threading.Thread(target=in_thread, args=(two_passes,))
    passes.start()
    try:
        for passes_so_far, turn in enumerate(go, start=1):
            for n in range(worker.SENDS_AT_ONCE):
                ticket.reply(f"reply {passes_so_far}.{n}", author=None)
            fake_messagebird.stall()
            turn.set()
            assert fake_messagebird.wait_for_requests(worker.SENDS_AT_ONCE * passes_so_far)
            fake_messagebird.release()
            wait_until_sent(worker.SENDS_AT_ONCE * passes_so_far)
    finally:
        fake_messagebird.release()
        for turn in go:
            turn.set()
        passes.join()
    assert fake_messagebird.connections == worker.SENDS_AT_ONCE
    assert len(fake_messagebird.references()) == 2 * worker.SENDS_AT_ONCE


def wait_until_sent(count: int) -> None:
    deadline = time.monotonic() + 10
    while Message.objects.filter(status=Message.Status.SENT).count() < count:
        assert time.monotonic() < deadline, f"{count} messages not sent in 10 s"
        time.sleep(0.02)


def test_it_keeps_a_message_queued_when_sending_breaks_unexpectedly(
    fake_messagebird: FakeMessageBird, settings: Any
) -> None:
    settings.MESSAGEBIRD_API_URL = "http://[::1"  # a typo no HTTP client can parse
    text_in()
    drain()
    message = confirmation()
    assert message.status == Message.Status.QUEUED
    assert message.attempts == 1
    assert "BadUrl" in message.last_error

    settings.MESSAGEBIRD_API_URL = fake_messagebird.url
    make_due(message)
    drain()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT


@pytest.mark.postgres_only
def test_parallel_workers_send_each_message_exactly_once(fake_messagebird: FakeMessageBird) -> None:
    ticket = open_ticket()
    messages = [ticket.reply(f"reply {n}", author=None) for n in range(100)]
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        while worker.send_due(limit=7):
            pass

    threads = [threading.Thread(target=in_thread, args=(work,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fake_messagebird.references() == {str(m.uuid): 1 for m in messages}
    assert Message.objects.filter(status=Message.Status.SENT).count() == 100
    assert set(Message.objects.values_list("attempts", flat=True)) == {1}


def open_ticket() -> Ticket:
    contact = Contact.objects.create(phone=CUSTOMER)
    return Ticket.objects.create(ref=new_ref(), contact=contact)


def in_thread(work: Any) -> None:
    try:
        work()
    finally:
        connection.close()  # each thread has its own connection; the test database must be freed


class TestBackoff:
    """The wait before a retry, from its bounds: jitter makes single values unpredictable."""

    @pytest.mark.parametrize("attempts", range(1, 12))
    def test_it_waits_between_half_and_all_of_the_exponential_step(self, attempts: int) -> None:
        ceiling = min(worker.BACKOFF_CAP, worker.BACKOFF_BASE * 2 ** (attempts - 1))
        for _ in range(50):
            wait = worker.backoff(attempts).total_seconds()
            assert ceiling / 2 <= wait <= ceiling

    def test_it_never_waits_less_after_more_failures_below_the_cap(self) -> None:
        # From attempt 11 on every wait is drawn from the same capped range.
        for attempts in range(1, 10):
            longest_before = max(worker.backoff(attempts) for _ in range(50))
            shortest_after = min(worker.backoff(attempts + 1) for _ in range(50))
            assert shortest_after >= longest_before

    @pytest.mark.parametrize("attempts", [11, 12, 100, 1025, 10**6])
    def test_it_caps_the_wait_however_long_the_outage(self, attempts: int) -> None:
        wait = worker.backoff(attempts).total_seconds()
        assert worker.BACKOFF_CAP / 2 <= wait <= worker.BACKOFF_CAP
