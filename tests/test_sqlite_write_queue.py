"""SQLite's writers queue on a lock file (smsdesk.db.sqlite3) rather than in busy sleeps."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator

import pytest
from django.db import connection, connections, transaction

from smsdesk.desk.models import Contact
from smsdesk.sms.models import InboundEvent, journal
from smsdesk.sms.providers import InboundSms

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's write queue"),
]


@pytest.fixture
def probe() -> Iterator[int]:
    """The lock file, opened apart: can another writer take its turn now?"""
    fd = os.open(connection.queue_path(), os.O_RDWR | os.O_CREAT)  # type: ignore[attr-defined]
    yield fd
    os.close(fd)


def free(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True


def test_a_transaction_holds_the_writers_turn_from_begin_to_commit(probe: int) -> None:
    assert free(probe)
    with transaction.atomic():
        assert not free(probe)
        Contact.objects.create(phone="+31600000001")
        assert not free(probe)
    assert free(probe)


def test_a_rolled_back_or_failed_transaction_gives_the_turn_back(probe: int) -> None:
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        Contact.objects.create(phone="+31600000001")
        assert not free(probe)
        1 / 0  # noqa: B018
    assert free(probe)
    assert not Contact.objects.exists()


def test_a_journal_insert_in_autocommit_takes_the_turn_only_while_it_runs(
    probe: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    writer = journal.connection("default")  # webhooks write on the journal's connection
    real = writer.join_write_queue  # type: ignore[attr-defined]

    def join() -> None:
        real()
        seen.append(free(probe))

    monkeypatch.setattr(writer, "join_write_queue", join)
    sms = InboundSms(sender="+31600000001", recipient="", text="hi", key="k1")
    InboundEvent.record("messagebird", sms, raw={})
    assert seen == [False]  # held for the INSERT
    assert free(probe)
    assert InboundEvent.objects.filter(key="k1").exists()


def test_a_writer_waits_in_the_queue_for_the_one_before_and_then_goes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrapper = type(connections["default"])
    real = wrapper.join_write_queue
    asked, got = threading.Event(), threading.Event()

    def join(self: object) -> None:
        if threading.current_thread() is not threading.main_thread():
            asked.set()
            real(self)
            got.set()
        else:
            real(self)

    monkeypatch.setattr(wrapper, "join_write_queue", join)

    def other_writer() -> None:
        try:
            with transaction.atomic():
                Contact.objects.create(phone="+31600000002")
        finally:
            connections["default"].close()

    thread = threading.Thread(target=other_writer)
    with transaction.atomic():
        Contact.objects.create(phone="+31600000001")
        thread.start()
        assert asked.wait(20)
        # Without the queue it would have its turn at once (and then wait in
        # SQLite's busy handler); with it, it waits for this commit.
        assert not got.wait(0.2)
    assert got.wait(20)
    thread.join(20)
    assert Contact.objects.count() == 2


def test_closing_a_connection_gives_the_turn_back(probe: int) -> None:
    connection.set_autocommit(False)
    connection.join_write_queue()  # type: ignore[attr-defined]
    assert not free(probe)
    connection.close()
    assert free(probe)
