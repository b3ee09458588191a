"""The worker's queries keep their plans whatever PostgreSQL's statistics say.

Statistics lag a burst: they are gathered now and then, while a burst piles
up thousands of texts and confirmations in seconds. Each test makes the
statistics say the opposite of what is stored, as a burst does, and reads
the plan PostgreSQL makes of the worker's own statement.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from smsdesk.desk import worker
from smsdesk.desk.models import Contact, Message, Ticket, new_ref
from smsdesk.sms.models import InboundEvent

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner"),
]

ROWS = 3000


def add_texts(
    count: int, prefix: str, *, processed: bool = False, ago: timedelta = timedelta(0)
) -> None:
    now = timezone.now() - ago
    InboundEvent.objects.bulk_create(
        InboundEvent(
            provider="messagebird",
            key=f"{prefix}{n}",
            sender=f"+316{prefix}{n:07d}",
            text="hello",
            raw={},
            received_at=now + timedelta(microseconds=n),
            processed_at=now if processed else None,
        )
        for n in range(count)
    )


def add_due_messages(count: int, ago: timedelta = timedelta(0)) -> None:
    contact, new = Contact.objects.get_or_create(phone="+3161")
    ticket = Ticket.objects.create(ref=new_ref(), contact=contact) if new else contact.tickets.get()
    due = timezone.now() - timedelta(seconds=1) - ago
    Message.objects.bulk_create(
        Message(
            ticket=ticket,
            direction=Message.Direction.OUT,
            body="Thanks, we got your text",
            status=Message.Status.QUEUED,
            next_attempt_at=due - timedelta(microseconds=n % 100),
        )
        for n in range(count)
    )


def analyze() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {InboundEvent._meta.db_table}, {Message._meta.db_table}")


def plan(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (VERBOSE) {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())


def statements(call: Callable[[], object]) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        call()
    return [query["sql"] for query in captured if query["sql"].startswith("SELECT")]


def test_the_idle_poll_reads_the_indexes_after_a_burst_was_threaded() -> None:
    # The statistics were taken mid-burst, with every text and every
    # confirmation waiting ...
    add_texts(ROWS, "1")
    add_due_messages(ROWS)
    analyze()
    # ... and the burst has since been threaded and confirmed: nothing waits.
    InboundEvent.objects.update(processed_at=timezone.now())
    Message.objects.update(status=Message.Status.SENT, next_attempt_at=None)

    [poll] = statements(worker.work_waiting)
    # A sequential scan would read every text threaded and every message
    # sent, on every poll.
    assert "Seq Scan" not in plan(poll), plan(poll)


def test_a_claim_probes_the_waiting_texts_of_its_own_numbers_only() -> None:
    # The statistics were taken when nothing waited; then a burst arrived.
    add_texts(ROWS, "1", processed=True)
    add_due_messages(ROWS)
    analyze()
    add_texts(ROWS, "2")

    read = statements(lambda: Message.claim_due(20))[-1]
    assert '"held"' in read
    # A hashed subplan reads every waiting text once per claim.
    assert "hashed SubPlan" not in plan(read), plan(read)


def test_a_claim_reads_the_due_messages_in_order_rather_than_sorting_them_all() -> None:
    add_due_messages(ROWS)
    analyze()

    claim = statements(lambda: Message.claim_due(20))[0]
    assert "FOR UPDATE SKIP LOCKED" in claim
    # A sort reads the due messages before the first is taken: after a
    # burst, thousands of them.
    assert "Sort" not in plan(claim), plan(claim)


def entries_read(call: Callable[[], object]) -> int:
    """The entries the worker's two partial indexes handed out during `call`."""
    sql = (
        "SELECT sum(pg_stat_get_xact_tuples_returned(oid)) FROM pg_class"
        " WHERE relname IN ('inbound_event_pending', 'message_outbox_due')"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        before = cursor.fetchone()[0]
        with transaction.atomic():
            call()
            transaction.set_rollback(True)  # the claims: each scan finds the same rows
        cursor.execute(sql)
        return int(cursor.fetchone()[0] - before)


def test_scans_from_the_floors_step_over_none_of_the_entries_left_by_rows_done_before() -> None:
    # A burst a minute ago, threaded and confirmed: each text and message
    # left its entry in the partial index it left, as it does until a VACUUM.
    add_texts(ROWS, "1", ago=timedelta(minutes=1))
    add_due_messages(ROWS, ago=timedelta(minutes=1))
    InboundEvent.objects.update(processed_at=timezone.now())
    Message.objects.update(status=Message.Status.SENT, next_attempt_at=None)
    # Then a few more texts, and their confirmations due.
    add_texts(10, "2")
    add_due_messages(10)
    with connection.cursor() as cursor:
        # On tables this small the planner may read the whole table instead.
        cursor.execute("SET LOCAL enable_seqscan = off")
    floors = worker.Floors()
    assert floors.look()

    def scans(journal: datetime | None, outbox: datetime | None) -> list[int]:
        return [
            entries_read(lambda: worker.claim_events(10, journal)),
            entries_read(lambda: Message.claim_due(10, outbox)),
            entries_read(lambda: worker.work_waiting(journal, outbox)),
        ]

    # From the start, each scan reads the 3,000 entries before the first
    # that waits (the look, one of each index); from the floors, none.
    assert scans(None, None) == [ROWS + 10, ROWS + 10, 2 * ROWS + 2]
    assert scans(floors.journal, floors.outbox) == [10, 10, 2]
