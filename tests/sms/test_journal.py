"""Webhooks that store their rows at the same moment share one INSERT (smsdesk.sms.journal).

Each test holds the first writer inside its statement, lets other webhooks
queue behind it, then lets it go: the rows queued meanwhile must go into
one statement, every webhook must return only once its own row is
committed, and a row the database refuses must fail its own webhook alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, connection, connections
from django.utils.timezone import now as django_now

from smsdesk.sms.journal import Journal, Row
from smsdesk.sms.models import JSON_ABOVE, InboundEvent, journal
from smsdesk.sms.providers import InboundSms

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 30.0  # seconds; a bound on every wait, never a pass/fail threshold


def sms(key: str, text: str | None = "hello", sent_at: datetime | None = None) -> InboundSms:
    return InboundSms(sender="+31612345678", recipient="", text=text, key=key, sent_at=sent_at)  # type: ignore[arg-type]


def stored(key: str) -> bool:
    """Whether the row is committed: looked up on a connection of its own."""
    with fresh_cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM sms_inboundevent WHERE key = %s", [key])
        return bool(cursor.fetchone()[0])


@contextmanager
def fresh_cursor() -> Iterator[Any]:
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            yield cursor
    finally:
        other.close()


class Webhook(threading.Thread):
    """One webhook's store, on a thread (and database connection) of its own."""

    def __init__(
        self,
        key: str,
        text: str | None = "hello",
        raw: dict[str, object] | None = None,
        sent_at: datetime | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.key, self.text, self.raw, self.sent_at = key, text, raw or {}, sent_at
        self.error: BaseException | None = None
        self.seen_stored: bool | None = None  # was the row committed when it returned?

    def run(self) -> None:
        try:
            InboundEvent.record("messagebird", sms(self.key, self.text, self.sent_at), self.raw)
            self.seen_stored = stored(self.key)
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            self.error = exc
        finally:
            connection.close()


class Writes:
    """The rows of each journal statement; the first statement waits until released."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.entered = threading.Event()
        self.released = threading.Event()

    def execute(self, real: Callable[..., None]) -> Callable[..., None]:
        def execute(journal: Journal, conn: Any, rows: list[Row]) -> None:
            self.sizes.append(len(rows))
            if len(self.sizes) == 1:
                self.entered.set()
                assert self.released.wait(WAIT)
            real(journal, conn, rows)

        return execute

    def queue_behind(self, first: Webhook, others: list[Webhook]) -> None:
        """Start `first`, and the others once it is inside its statement; wait till they queue."""
        first.start()
        assert self.entered.wait(WAIT)
        for webhook in others:
            webhook.start()
        deadline = time.monotonic() + WAIT
        while len(journal.queue) < len(others):
            assert time.monotonic() < deadline, "the webhooks never queued"
            time.sleep(0.01)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Writes]:
    writes = Writes()
    monkeypatch.setattr(Journal, "execute", writes.execute(Journal.execute))
    yield writes
    writes.released.set()  # a failed test must not leave a thread waiting


def finish(webhooks: list[Webhook]) -> None:
    for webhook in webhooks:
        webhook.join(WAIT)
        assert not webhook.is_alive()


def test_webhooks_that_arrive_during_a_write_share_the_next_statement(
    writes: Writes,
) -> None:
    first = Webhook("first")
    others = [Webhook(f"other-{n:02d}") for n in range(12)]
    writes.queue_behind(first, others)
    assert not any(stored(webhook.key) for webhook in [first, *others])
    assert all(webhook.is_alive() for webhook in others)  # none answered before its row is in

    writes.released.set()
    finish([first, *others])

    assert writes.sizes == [1, 12]
    assert [(w.error, w.seen_stored) for w in [first, *others]] == [(None, True)] * 13
    assert InboundEvent.objects.count() == 13


@pytest.mark.parametrize("rows", [JSON_ABOVE, JSON_ABOVE + 2])
def test_a_row_the_database_refuses_fails_only_its_own_webhook(writes: Writes, rows: int) -> None:
    first = Webhook("first")
    good = [Webhook(f"good-{n}") for n in range(rows - 1)]
    bad = Webhook("bad", text=None)  # the text column is NOT NULL
    writes.queue_behind(first, [good[0], bad, *good[1:]])

    writes.released.set()
    finish([first, bad, *good])

    assert isinstance(bad.error, IntegrityError)
    assert not stored("bad")
    assert [(w.error, w.seen_stored) for w in [first, *good]] == [(None, True)] * rows
    # The shared statement failed, then each of its rows was tried alone.
    assert writes.sizes == [1, rows] + [1] * rows


def test_a_duplicate_delivery_in_the_same_statement_is_stored_once(
    writes: Writes,
) -> None:
    first = Webhook("first")
    twice = [Webhook("same-id"), Webhook("same-id")]
    writes.queue_behind(first, twice)

    writes.released.set()
    finish([first, *twice])

    assert writes.sizes == [1, 2]
    assert [(w.error, w.seen_stored) for w in twice] == [(None, True)] * 2
    assert InboundEvent.objects.filter(key="same-id").count() == 1


# Up to JSON_ABOVE rows a VALUES list, more as one JSON document on PostgreSQL.
@pytest.mark.parametrize("rows", [JSON_ABOVE, JSON_ABOVE + 2])
def test_rows_written_together_are_stored_as_each_webhook_sent_them(
    writes: Writes, rows: int
) -> None:
    first = Webhook("first")
    texts = [
        "Wáár is mijn pakket? 📦",
        'a "quote" and a \\ backslash',
        "tab\tand\nnewline",
        "{}",
        "",
        "%s and %(name)s are no placeholders here",
        "日本語のテキスト",
    ]
    moments = [
        None,
        datetime(2026, 3, 29, 1, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 29, 3, 0, 0, 1, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2026, 6, 1, 12, tzinfo=UTC),
        None,
    ]
    others = [
        Webhook(f"varied-{n}", text, {"body": text, "n": n, "list": [1.5, None, True]}, moment)
        for n, (text, moment) in enumerate(zip(texts, moments, strict=True))
        if n < rows
    ]
    writes.queue_behind(first, others)
    writes.released.set()
    finish([first, *others])

    assert writes.sizes == [1, len(others)]
    for webhook in others:
        event = InboundEvent.objects.get(key=webhook.key)
        assert (event.text, event.raw, event.sent_at) == (
            webhook.text,
            webhook.raw,
            webhook.sent_at,
        )
        assert (event.sender, event.recipient, event.processed_at, event.error) == (
            "+31612345678",
            "",
            None,
            "",
        )
        assert abs(event.received_at - django_now()).total_seconds() < WAIT


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's statement only")
def test_postgresql_gets_many_rows_as_one_statement_text_with_one_parameter() -> None:
    row = ("messagebird", "key", "+31612345678", "", "hello", None, {}, django_now(), None, "")
    few, many, most = (InboundEvent.insert_statement(connection, [row] * n) for n in (5, 6, 64))
    assert "VALUES" in few[0] and len(few[1]) == 50
    assert many[0] == most[0]
    assert (len(many[1]), len(most[1])) == (1, 1)


def test_a_webhook_alone_writes_its_row_at_once(writes: Writes) -> None:
    writes.released.set()
    InboundEvent.record("messagebird", sms("alone"), raw={})

    assert writes.sizes == [1]
    assert stored("alone")
    assert journal.queue == []
    assert not journal.writing


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="a SQLite connection is a file: nothing drops it"
)
def test_a_dropped_journal_connection_fails_one_webhook_and_is_replaced() -> None:
    InboundEvent.record("messagebird", sms("before"), raw={})
    backend = journal.connection("default").connection.info.backend_pid
    with fresh_cursor() as cursor:  # as a database restart would
        cursor.execute("SELECT pg_terminate_backend(%s)", [backend])

    with pytest.raises(DatabaseError):
        InboundEvent.record("messagebird", sms("lost"), raw={})  # a 500: the provider retries
    InboundEvent.record("messagebird", sms("after"), raw={})

    assert [stored(key) for key in ("before", "lost", "after")] == [True, False, True]


def test_an_expired_journal_connection_is_reopened_before_it_is_used() -> None:
    InboundEvent.record("messagebird", sms("first"), raw={})
    writer = journal.connection("default")
    old = writer.connection
    writer.close_at = time.monotonic() - 1  # past CONN_MAX_AGE

    InboundEvent.record("messagebird", sms("second"), raw={})

    assert writer.connection is not None and writer.connection is not old
    assert stored("second")
