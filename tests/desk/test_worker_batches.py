"""The worker's batched paths: many events per transaction, many sends in flight at once."""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from smsdesk.desk import models, worker
from smsdesk.desk.models import Contact, Message, Ticket, new_ref
from smsdesk.lib import http
from smsdesk.sms.models import InboundEvent
from tests.desk.workers import WAIT, text, wait_until_threaded, worker_running

pytestmark = pytest.mark.django_db(transaction=True)


def inbound(ticket: Ticket) -> list[str]:
    return [m.body for m in ticket.messages.filter(direction=Message.Direction.IN)]


def confirmations(ticket: Ticket) -> int:
    return ticket.messages.filter(direction=Message.Direction.OUT).count()


def test_one_batch_threads_new_numbers_existing_tickets_and_bursts_in_arrival_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    known = Contact.objects.create(phone="+31600000001")
    existing = Ticket.objects.create(ref=new_ref(), contact=known)
    arrivals = [
        ("+31611111111", "new 1"),
        ("+31600000001", "known 1"),
        ("+31622222222", "burst 1"),
        ("+31622222222", "burst 2"),
        ("+31633333333", "doomed"),
        ("+31600000001", "known 2"),
        ("+31622222222", "burst 3"),
        ("+31611111111", "new 2"),
    ]
    for n, (sender, body) in enumerate(arrivals):
        text(sender, body, f"k{n}", after=timedelta(milliseconds=n))

    real_queue_all = Message.queue_all

    def refuse_one(texts: Any, author: Any = None, purpose: str = "") -> list[Message]:
        # Fault injection: the outbox refuses one customer's confirmation.
        if any(ticket.contact.phone == "+31633333333" for ticket, _ in texts):
            raise RuntimeError("outbox refuses +31633333333")
        return real_queue_all(texts, author=author, purpose=purpose)

    monkeypatch.setattr(Message, "queue_all", refuse_one)
    assert worker.process_inbound() == 8
    assert worker.process_inbound() == 0

    doomed = InboundEvent.objects.get(key="k4")
    assert "outbox refuses" in doomed.error and doomed.processed_at is None
    assert not Contact.objects.filter(phone="+31633333333").exists()  # nothing half-done
    assert InboundEvent.pending().count() == 0
    assert InboundEvent.objects.filter(processed_at__isnull=False).count() == 7

    assert Ticket.objects.count() == 3
    assert inbound(existing) == ["known 1", "known 2"]
    assert confirmations(existing) == 0
    new = Ticket.objects.get(contact__phone="+31611111111")
    burst = Ticket.objects.get(contact__phone="+31622222222")
    assert inbound(new) == ["new 1", "new 2"]
    assert inbound(burst) == ["burst 1", "burst 2", "burst 3"]
    assert confirmations(new) == confirmations(burst) == 1
    events = {e.key: e for e in InboundEvent.objects.all()}
    existing.refresh_from_db()
    burst.refresh_from_db()
    assert existing.last_message_at == events["k5"].received_at
    assert burst.created == events["k2"].received_at
    assert burst.last_message_at == events["k6"].received_at


def test_a_batch_with_a_duplicate_new_number_opens_one_ticket_per_number() -> None:
    for n in range(30):
        text(f"+3164000{n % 10:04d}", f"text {n}", f"d{n}", after=timedelta(milliseconds=n))
    assert worker.process_inbound() == 30
    assert Ticket.objects.count() == 10
    for ticket in Ticket.objects.all():
        assert len(inbound(ticket)) == 3
        assert confirmations(ticket) == 1


def test_two_new_numbers_drawing_the_same_ref_in_one_batch_each_get_their_own_ticket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 30^6 refs: a batch of 200 new numbers draws one twice about once in
    # 37,000 batches. The second must draw again, not take the first's ticket.
    drawn = iter(["SAME22", "SAME22", "OTHER3"])
    monkeypatch.setattr(models, "new_ref", lambda: next(drawn))
    text("+31640000001", "from the first", "r1")
    text("+31640000002", "from the second", "r2", after=timedelta(milliseconds=1))
    assert worker.process_inbound() == 2
    tickets = {t.contact.phone: t for t in Ticket.objects.select_related("contact")}
    assert {phone: t.ref for phone, t in tickets.items()} == {
        "+31640000001": "SAME22",
        "+31640000002": "OTHER3",
    }
    assert inbound(tickets["+31640000001"]) == ["from the first"]
    assert inbound(tickets["+31640000002"]) == ["from the second"]
    assert confirmations(tickets["+31640000001"]) == 1
    assert confirmations(tickets["+31640000002"]) == 1


def test_a_closed_ticket_is_not_reused_by_a_batch() -> None:
    contact = Contact.objects.create(phone="+31612345678")
    closed = Ticket.objects.create(ref=new_ref(), contact=contact, status=Ticket.Status.CLOSED)
    text("+31612345678", "again", "a1")
    text("+31612345678", "and again", "a2", after=timedelta(milliseconds=1))
    worker.process_inbound()
    opened = Ticket.objects.exclude(pk=closed.pk).get()
    assert inbound(opened) == ["again", "and again"]
    assert confirmations(opened) == 1
    assert not closed.messages.exists()


def in_thread(work: Any) -> None:
    try:
        work()
    finally:
        connection.close()  # each thread has its own connection


@pytest.mark.postgres_only
def test_two_workers_batching_the_same_new_numbers_open_one_ticket_and_confirm_once() -> None:
    numbers = [f"+316200000{n:02d}" for n in range(40)]
    # Every number in both halves of the journal, in a different order in
    # each, so that the two workers' batches meet them in opposite orders.
    first_half = numbers[:]
    second_half = numbers[::-1]
    for n, number in enumerate(first_half + second_half):
        text(number, f"{number} #{n}", f"p{n:03d}", after=timedelta(microseconds=n))
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            start.wait(timeout=WAIT)
            while worker.process_inbound(limit=40):
                pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=in_thread, args=(work,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT)
    assert not errors
    assert not InboundEvent.objects.exclude(error="").exists()
    assert not InboundEvent.pending().exists()
    assert Contact.objects.count() == 40
    assert Ticket.objects.count() == 40
    for ticket in Ticket.objects.all():
        assert len(inbound(ticket)) == 2
        assert confirmations(ticket) == 1


class ScriptedProvider:
    """A local MessageBird that answers by message body: "stall", "refuse", or 201."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.received: Counter[str] = Counter()
        self.stalled = threading.Event()
        self._lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the worker's client expects

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length))
                with provider._lock:
                    provider.received[request["body"]] += 1
                if request["body"] == "stall":
                    provider.stalled.set()
                    provider.release.wait(WAIT)
                if request["body"] == "refuse":
                    status, answer = 422, {"errors": [{"code": 10, "description": "bad number"}]}
                else:
                    status, answer = 201, {"id": uuid.uuid4().hex}
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the worker gave up waiting

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128  # every sender connects at once

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedProvider]:
    provider = ScriptedProvider()
    settings.SMSDESK_PROVIDER = "messagebird"
    settings.MESSAGEBIRD_API_URL = provider.url
    settings.MESSAGEBIRD_ACCESS_KEY = "test"
    settings.MESSAGEBIRD_ORIGINATOR = "+3197010254321"
    monkeypatch.setattr(http, "TIMEOUT", http.Timeout(connect=5.0, read=WAIT))
    http.reset()
    yield provider
    provider.close()
    http.reset()


def test_a_stalled_send_holds_up_neither_the_sends_beside_it_nor_their_outcomes(
    scripted: ScriptedProvider,
) -> None:
    contact = Contact.objects.create(phone="+31612345678")
    ticket = Ticket.objects.create(ref=new_ref(), contact=contact)
    stalled = ticket.reply("stall", author=None)
    refused = ticket.reply("refuse", author=None)
    fine = [ticket.reply(f"fine {n}", author=None) for n in range(5)]
    sending = threading.Thread(target=in_thread, args=(worker.send_due,))
    sending.start()
    try:
        assert scripted.stalled.wait(WAIT)
        # While one send hangs, the others are answered and written down.
        for _ in range(int(WAIT * 20)):
            done = Message.objects.filter(pk__in=[m.pk for m in [refused, *fine]])
            if not done.filter(status=Message.Status.SENDING).exists():
                break
            threading.Event().wait(0.05)
        for message in fine:
            message.refresh_from_db()
            assert message.status == Message.Status.SENT
            assert message.provider_message_id and message.sent_at is not None
        refused.refresh_from_db()
        assert refused.status == Message.Status.FAILED
        assert "bad number" in refused.last_error
        assert refused.next_attempt_at is None
        stalled.refresh_from_db()
        assert stalled.status == Message.Status.SENDING  # still leased to the hung send
    finally:
        scripted.release.set()
        sending.join(timeout=WAIT)
    stalled.refresh_from_db()
    assert stalled.status == Message.Status.SENT
    assert set(scripted.received.values()) == {1}  # nothing went out twice
    assert worker.send_due() == 0


def test_outcomes_of_a_batch_are_recorded_only_for_the_claim_that_made_them(
    scripted: ScriptedProvider,
) -> None:
    contact = Contact.objects.create(phone="+31612345678")
    ticket = Ticket.objects.create(ref=new_ref(), contact=contact)
    messages = [ticket.reply(f"fine {n}", author=None) for n in range(3)]
    claimed = Message.claim_due(3)
    # The lease ran out and another worker re-claimed the first row meanwhile.
    Message.objects.filter(pk=claimed[0].pk).update(attempts=2)
    Message.mark_all_sent("messagebird", [(m, f"id-{m.pk}") for m in claimed])
    statuses = dict(Message.objects.values_list("pk", "status"))
    assert statuses[messages[0].pk] == Message.Status.SENDING
    assert statuses[messages[1].pk] == statuses[messages[2].pk] == Message.Status.SENT
    assert Message.objects.get(pk=messages[2].pk).provider_message_id == f"id-{messages[2].pk}"


def test_sending_a_batch_looks_up_no_row_one_by_one(scripted: ScriptedProvider) -> None:
    """A claim loads what sending and recording read: no lazy load per message."""
    from django.test.utils import CaptureQueriesContext

    ticket = Ticket.objects.create(
        ref=new_ref(), contact=Contact.objects.create(phone="+31611111111")
    )
    for n in range(30):
        Message.queue(ticket, f"reply {n}")
    with CaptureQueriesContext(connection) as queries:
        assert worker.send_due() == 30
    # Django fetches one row by key (a deferred field, a related object) with LIMIT 21.
    assert [q["sql"] for q in queries if "LIMIT 21" in q["sql"]] == []
    assert len(queries) < 30
    assert set(Message.objects.values_list("status", flat=True)) == {Message.Status.SENT}


def test_the_worker_gives_way_to_webhooks_only_while_they_keep_coming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker, "BURST_BACKLOG", 2)
    burst = worker.Burst()
    sqlite = connection.vendor == "sqlite"
    give_way = 0.04 * (worker.GIVE_WAY if sqlite else worker.GIVE_WAY_POSTGRES)
    text("+31611111111", "hello", "first")
    # The first full batch: the backlog may have been there all along.
    assert burst.pause(worker.BATCH, 0.04) == 0.0
    text("+31611111111", "again", "second")
    # Another full batch, and webhooks came meanwhile: a burst.
    assert burst.pause(worker.BATCH, 0.04) == give_way
    assert burst.batch == worker.burst_batch()
    # Still a backlog but nothing new: the burst is over, catch up at full pace.
    assert burst.pause(burst.batch, 0.01) == 0.0
    assert burst.batch == worker.BATCH
    text("+31611111111", "third", "third")
    # New webhooks, but the batch was not full: no backlog to give way for.
    assert burst.pause(worker.BATCH - 1, 0.04) == 0.0
    # After that lull, growth is told from the next full batch on.
    assert burst.pause(worker.BATCH, 0.04) == 0.0
    text("+31611111111", "fourth", "fourth")
    assert burst.pause(worker.BATCH, 0.04) == give_way


def test_texts_the_worker_keeps_up_with_get_no_give_way_however_full_its_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A steady flow fills small batches as fast as they are taken; what
    # tells a burst is texts piling up.
    monkeypatch.setattr(worker, "BURST_BACKLOG", 3)
    burst = worker.Burst()
    text("+31611111111", "hello", "first")
    assert burst.pause(worker.BATCH, 0.04) == 0.0
    text("+31611111112", "hello", "second")
    # Texts came during a full batch, but only two wait: full pace.
    assert burst.pause(worker.BATCH, 0.04) == 0.0
    assert burst.batch == worker.BATCH
    text("+31611111113", "hello", "third")
    # A third waiting: the worker is falling behind, and gives way.
    assert burst.pause(burst.batch, 0.04) > 0.0
    assert burst.batch == worker.burst_batch()


def past_a_first_full_batch(
    monkeypatch: pytest.MonkeyPatch, backlog: int, held: float
) -> worker.Burst:
    """A worker's Burst after its first full batch since a lull, looking at every batch."""
    monkeypatch.setattr(worker, "BURST_BACKLOG", backlog)
    monkeypatch.setattr(worker, "BACKLOG_CHECK", 0.0)
    burst = worker.Burst()
    text("+31611111111", "hello", "first")
    assert burst.pause(worker.BATCH, held) == 0.0
    return burst


def test_a_worker_gives_way_for_as_long_as_its_whole_pass_took_sends_included(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedProvider
) -> None:
    # Sending takes SQLite's write lock and PostgreSQL's cores as threading does.
    burst = past_a_first_full_batch(monkeypatch, backlog=1, held=0.0001)
    burst.batch = 1
    text("+31611111112", "hello", "second")
    text("+31611111113", "hello", "third")
    ticket = Ticket.objects.create(ref=new_ref(), contact=Contact.objects.create(phone="+3161999"))
    Message.queue(ticket, "stall")
    releaser = threading.Timer(0.3, scripted.release.set)
    releaser.start()
    try:
        _, pause = worker.work(burst, worker.Floors())
    finally:
        releaser.cancel()
    assert scripted.received["stall"] == 1
    factor = worker.GIVE_WAY if connection.vendor == "sqlite" else worker.GIVE_WAY_POSTGRES
    # The provider held the send for 0.3 s of it; threading one text takes a few ms.
    assert pause >= 0.25 * factor


def test_a_flow_the_workers_would_keep_up_with_at_full_pace_gets_no_give_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Its windows last a few milliseconds, in which two texts may come
    # faster than a flood (see the test of FLOOD below).
    monkeypatch.setattr(worker, "FLOOD", math.inf)
    burst = past_a_first_full_batch(monkeypatch, backlog=2, held=0.0001)
    text("+31611111112", "hello", "a2")
    text("+31611111113", "hello", "a3")
    # Texts piling up, and no window yet to tell a burst by: give way.
    assert burst.pause(worker.BATCH, 0.0001) > 0.0
    # Since then the workers threaded three texts while two more came:
    # a flow they keep up with, though two wait. Full pace.
    InboundEvent.objects.update(processed_at=timezone.now())
    text("+31611111114", "hello", "b1")
    text("+31611111115", "hello", "b2")
    assert burst.pause(burst.batch, 0.0001) == 0.0
    assert burst.batch == worker.BATCH
    # Ten more came and none was threaded: a burst again.
    for n in range(10):
        text(f"+3161222{n:04d}", "hello", f"c{n}")
    assert burst.pause(burst.batch, 0.0001) > 0.0
    assert burst.batch == worker.burst_batch()


def test_the_pace_counts_the_time_given_way_as_time_the_workers_could_have_threaded() -> None:
    pace = worker.Pace()
    assert pace.keeps_up(0.0, newest=1000, oldest=800) is None
    # 1,000 texts/s came; 400 threaded while giving way for 0.6 s of the
    # second: at full pace 1,000/s, and more in the full batches of full pace.
    pace.paused = 0.6
    assert pace.keeps_up(1.0, newest=2000, oldest=1200) is True
    # At full pace, 800 threaded while 1,200 came: behind by a third.
    assert pace.keeps_up(2.0, newest=3200, oldest=2000) is False
    # 500 threaded while giving way for 0.75 s: 2,000/s at full pace, in
    # the batches of giving way; far too few for 12,000/s.
    pace.paused = 0.75
    assert pace.keeps_up(3.0, newest=15200, oldest=2500) is False
    # Within a window the last verdict stands.
    assert pace.keeps_up(3.0 + worker.BACKLOG_CHECK / 2, newest=99000, oldest=2500) is False


def test_on_sqlite_the_small_batches_of_giving_way_count_at_what_they_cost() -> None:
    pace = worker.Pace()
    pace.keeps_up(0.0, newest=1000, oldest=800)
    # 1,000/s came; 160 threaded while giving way for 0.6 s: 400/s at full
    # pace in batches of 20, which SQLite's worker threads at a third of
    # the cost in full batches.
    pace.paused = 0.6
    expected = connection.vendor == "sqlite"
    assert pace.keeps_up(1.0, newest=2000, oldest=960) is expected


def test_a_flood_gets_give_way_even_from_workers_that_would_keep_up_with_it() -> None:
    pace = worker.Pace()
    pace.keeps_up(0.0, newest=1000, oldest=800)
    # Just short of a flood, and the workers thread faster than it comes: full pace.
    assert pace.keeps_up(1.0, newest=1000 + 1900, oldest=800 + 3000) is True
    # Past it, the webhooks come first though the workers could keep up.
    assert pace.keeps_up(2.0, newest=2900 + 2100, oldest=3800 + 3000) is False
    # And the flood's end is told by the next whole window.
    assert pace.keeps_up(3.0, newest=5000 + 500, oldest=6800 + 3000) is True


def test_a_worker_whose_oldest_text_waited_too_long_catches_up_at_full_pace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    burst = past_a_first_full_batch(monkeypatch, backlog=1, held=0.04)
    text("+31611111112", "hello", "second")
    assert burst.pause(worker.BATCH, 0.04) > 0.0
    # The oldest text has now waited MAX_LAG: the worker stops giving way…
    InboundEvent.objects.filter(key="first").update(
        received_at=timezone.now() - timedelta(seconds=worker.MAX_LAG)
    )
    text("+31611111113", "hello", "third")
    assert burst.pause(burst.batch, 0.04) == 0.0
    assert burst.batch == worker.BATCH
    # …and does not start again while texts keep coming, though the oldest
    # waiting now is new: not until a batch finds fewer than it takes.
    InboundEvent.objects.filter(key="first").update(processed_at=timezone.now())
    text("+31611111114", "hello", "fourth")
    assert burst.pause(burst.batch, 0.04) == 0.0
    assert burst.pause(burst.batch - 1, 0.04) == 0.0
    text("+31611111115", "hello", "fifth")
    assert burst.pause(burst.batch, 0.04) == 0.0  # the first full batch after the lull
    text("+31611111116", "hello", "sixth")
    assert burst.pause(burst.batch, 0.04) > 0.0


def test_a_worker_falling_behind_looks_at_the_backlog_again_only_after_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker, "BURST_BACKLOG", 2)
    burst = worker.Burst()
    text("+31611111111", "hello", "first")
    assert burst.pause(worker.BATCH, 0.04) == 0.0
    text("+31611111112", "hello", "second")
    assert burst.pause(worker.BATCH, 0.04) > 0.0
    # The backlog is gone, but within BACKLOG_CHECK the worker keeps giving way…
    InboundEvent.objects.update(processed_at=timezone.now())
    text("+31611111113", "hello", "third")
    assert burst.pause(burst.batch, 0.04) > 0.0
    # …and once it has passed, it looks again.
    burst.behind_until = 0.0
    InboundEvent.objects.update(processed_at=timezone.now())
    text("+31611111114", "hello", "fourth")
    assert burst.pause(burst.batch, 0.04) == 0.0


def busy_for_a_while(burst: worker.Burst, times: float = 1.0) -> None:
    """As if the worker had worked without a lull for PROBE_EVERY seconds (times that) already."""
    assert burst.busy_since is not None
    burst.busy_since -= worker.PROBE_EVERY * times


def test_a_worker_busy_without_a_lull_steps_aside_now_and_then() -> None:
    burst = worker.Burst()
    # Passes that find texts enough to go straight on, but fewer than a
    # batch: the worker keeps up, or holds the webhooks back.
    assert burst.pause(worker.GATHER, 0.01) == 0.0
    busy_for_a_while(burst)
    assert burst.pause(worker.GATHER, 0.01) == worker.PROBE
    # Once; the next is PROBE_EVERY away.
    assert burst.pause(worker.GATHER, 0.01) == 0.0
    busy_for_a_while(burst)
    assert burst.pause(worker.GATHER, 0.01) == worker.PROBE


def test_a_worker_that_waits_for_texts_between_passes_never_steps_aside() -> None:
    burst = worker.Burst()
    assert burst.pause(worker.GATHER, 0.01) == 0.0
    busy_for_a_while(burst)
    # A pass that found too few to go straight on: the worker waits for
    # texts, so nothing is held back, and the clock starts again after it.
    assert burst.pause(worker.GATHER - 1, 0.01) == 0.0
    assert burst.busy_since is None
    assert burst.pause(worker.GATHER, 0.01) == 0.0


def test_a_worker_catching_up_on_a_backlog_that_no_longer_grows_does_not_step_aside() -> None:
    burst = worker.Burst()
    text("+31611111111", "hello", "first")
    assert burst.pause(worker.BATCH, 0.04) == 0.0
    busy_for_a_while(burst)
    # Full batches, nothing new: a backlog, not a flood held back.
    assert burst.pause(worker.BATCH, 0.04) == 0.0
    # Texts still coming, at a pace it keeps up with: it steps aside.
    text("+31611111112", "hello", "second")
    assert burst.pause(worker.BATCH, 0.04) == worker.PROBE


def test_what_piles_up_while_the_worker_steps_aside_is_a_burst_it_gives_way_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker, "BURST_BACKLOG", 3)
    sqlite = connection.vendor == "sqlite"
    give_way = 0.04 * (worker.GIVE_WAY if sqlite else worker.GIVE_WAY_POSTGRES)
    burst = worker.Burst()
    text("+31611111111", "hello", "first")
    assert burst.pause(worker.BATCH, 0.04) == 0.0
    # Its window, still open, says the workers keep up with what comes…
    burst.pace.mark, burst.pace.verdict = (time.monotonic(), 0, 0), True
    text("+31611111112", "hello", "second")
    busy_for_a_while(burst)
    assert burst.pause(worker.BATCH, 0.04) == worker.PROBE
    # …but while it stepped aside, texts piled up to BURST_BACKLOG: told
    # afresh, as at a burst's start, they are one to give way to.
    text("+31611111113", "hello", "third")
    assert burst.pause(worker.BATCH, 0.04) == give_way
    assert burst.batch == worker.burst_batch()


def test_a_worker_giving_way_or_catching_up_after_a_long_wait_does_not_step_aside(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    burst = past_a_first_full_batch(monkeypatch, backlog=1, held=0.04)
    text("+31611111112", "hello", "second")
    busy_for_a_while(burst, times=10)
    give_way = burst.pause(worker.BATCH, 0.04)
    assert give_way > 0.0 and give_way != worker.PROBE
    # Giving way starts the clock again: nothing is held back meanwhile.
    assert burst.busy_since is not None
    assert time.monotonic() - burst.busy_since < worker.PROBE_EVERY * 5
    burst.behind_until = 0.0
    InboundEvent.objects.filter(key="first").update(
        received_at=timezone.now() - timedelta(seconds=worker.MAX_LAG)
    )
    text("+31611111113", "hello", "third")
    busy_for_a_while(burst)
    # The oldest waited MAX_LAG: full pace until it has caught up, no pause.
    assert burst.pause(burst.batch, 0.04) == 0.0
    assert burst.catching_up


def test_a_worker_giving_way_during_a_burst_still_threads_all_of_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker, "BATCH", 5)
    monkeypatch.setattr(worker, "BURST_BATCH", 3)
    monkeypatch.setattr(worker, "BURST_BATCH_POSTGRES", 3)
    monkeypatch.setattr(worker, "BURST_BACKLOG", 5)
    pauses: list[float] = []
    batches: list[int] = []
    real_pause = worker.Burst.pause

    def pause(self: worker.Burst, threaded: int, held: float) -> float:
        batches.append(threaded)
        pauses.append(real_pause(self, threaded, held))
        if len(batches) == 1:
            # Webhooks arriving while the worker threads its second batch.
            text("+31622220001", "hi", "late 1")
            text("+31622220002", "hi", "late 2")
        return pauses[-1]

    monkeypatch.setattr(worker.Burst, "pause", pause)
    for n in range(23):
        text(f"+3161111{n:04d}", "hi", f"b{n}")
    with worker_running():
        wait_until_threaded()
    assert not InboundEvent.pending().exists()
    assert Ticket.objects.count() == 25
    # 5 + 5 + 3 + 5 + 5 + 2: the backlog met at the start is no burst; the
    # second batch saw new webhooks and the next one was smaller; after it
    # nothing new came, and the rest caught up.
    assert [n for n in batches if n] == [5, 5, 3, 5, 5, 2]
    assert len([p for p in pauses if p]) == 1


class Looks(threading.Event):
    """The worker's stop event, counting the looks of a give-way; each wait may bring texts.

    `arrive(n)` is called at the n-th wait (from 1). With `real`, a wait
    takes its time; without, none, so that only what comes ends the give-way.
    """

    def __init__(self, arrive: Any = None, real: bool = False) -> None:
        super().__init__()
        self.waits: list[float] = []
        self.arrive = arrive
        self.real = real

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(timeout)
        stopped = super().wait(timeout) if self.real else self.is_set()
        if self.arrive is not None:
            self.arrive(len(self.waits))
        return stopped


def giving_way() -> worker.Burst:
    """A worker's Burst just after a pass that told it to give way."""
    burst = worker.Burst()
    text("+31611111111", "hello", "first")
    burst.newest = InboundEvent.newest_id()
    return burst


def test_a_worker_giving_way_goes_back_to_work_once_no_text_came_since_its_last_look() -> None:
    burst = giving_way()
    looks = Looks()
    burst.give_way(60.0, looks)
    # The burst is over: one look found nothing new, and the rest of the
    # pause is not sat out, nor counted as given way.
    assert looks.waits == [worker.GIVE_WAY_LOOK]
    assert burst.pace.paused < 60.0


def test_a_worker_giving_way_looks_again_while_texts_keep_coming() -> None:
    burst = giving_way()

    def arrive(look: int) -> None:
        if look <= 3:
            text(f"+3161222000{look}", "hello", f"late {look}")

    looks = Looks(arrive)
    burst.give_way(60.0, looks)
    assert looks.waits == [worker.GIVE_WAY_LOOK] * 4


def test_a_worker_gives_way_no_longer_than_its_pause_however_many_texts_come() -> None:
    burst = giving_way()
    looks = Looks(lambda look: text(f"+316122{look:05d}", "hello", f"late {look}"), real=True)
    burst.give_way(0.25, looks)
    assert looks.waits and all(0 < wait <= worker.GIVE_WAY_LOOK for wait in looks.waits)
    assert sum(looks.waits) <= 0.25 + 0.001  # a wait may end a hair early
    # It ended only because the pause was over, and the pace counts all of it.
    assert burst.pace.paused >= 0.25


def test_a_worker_told_to_stop_while_giving_way_stops_at_once() -> None:
    burst = giving_way()
    looks = Looks(lambda look: text(f"+316122{look:05d}", "hello", f"late {look}"))
    looks.set()
    burst.give_way(60.0, looks)
    # Texts came, but the worker is stopping: no more looks.
    assert looks.waits == [worker.GIVE_WAY_LOOK]
