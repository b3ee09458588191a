"""The hub reads each event once and hands it to every connected stream."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from smsdesk.live import events
from smsdesk.live import hub as hub_module
from smsdesk.live.events import publish
from smsdesk.live.hub import Busy, hub
from smsdesk.live.models import Event

from .conftest import WAIT, next_changes, resolve

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_subscriber_gets_the_same_change_from_one_read() -> None:
    subs = [hub.subscribe(resolve) for _ in range(50)]
    publish([4, 2], "message")

    got = [next_changes(sub) for sub in subs]

    assert all(len(changes) == 1 for changes in got)
    change = got[0][0]
    assert (change.kind, change.tickets, change.refs) == ("message", (2, 4), ("T2", "T4"))
    # One object for all fifty: read and resolved once, not once per stream.
    assert {id(changes[0]) for changes in got} == {id(change)}


def test_a_subscriber_gets_changes_in_commit_order_and_only_new_ones() -> None:
    publish([1], "before")
    sub = hub.subscribe(resolve)
    for n in (2, 3, 4):
        publish([n], "message")
    seen = []
    while len(seen) < 3 and (changes := next_changes(sub)):
        seen += changes
    assert [change.tickets for change in seen] == [(2,), (3,), (4,)]


def test_changes_to_deleted_tickets_name_only_those_that_remain() -> None:
    sub = hub.subscribe(lambda ids: {pk: f"T{pk}" for pk in ids if pk != 2})
    publish([1, 2], "ticket")
    (change,) = next_changes(sub)
    assert (change.tickets, change.refs) == ((1,), ("T1",))


def test_a_change_published_in_this_process_wakes_the_hub_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With polls an hour apart, only the wake-up after commit can bring it.
    monkeypatch.setattr(hub_module, "POLL", 3600.0)
    monkeypatch.setattr(hub_module, "LISTEN_WAIT", 3600.0)
    sub = hub.subscribe(resolve)
    with transaction.atomic():
        publish([9], "note")
    assert [change.kind for change in next_changes(sub)] == ["note"]


def test_a_stream_that_falls_behind_the_backlog_is_told_to_reset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub, "_backlog", hub._backlog.__class__(maxlen=3))
    sub = hub.subscribe(resolve)
    watcher = hub.subscribe(resolve)
    for n in range(1, 6):
        publish([n], "message")
        next_changes(watcher)
    batch = sub.wait(WAIT)
    assert batch.behind and not batch.changes


def test_a_change_wakes_only_the_streams_that_want_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub, "_backlog", hub._backlog.__class__(maxlen=3))
    page = hub.subscribe(resolve, lambda change: 1 in change.tickets)
    inbox = hub.subscribe(resolve)
    for _ in range(5):  # more than the backlog holds, none for the page
        publish([2], "message")
        next_changes(inbox)
        assert not page.news.is_set()
    publish([1], "message")
    next_changes(inbox)
    batch = page.wait(WAIT)
    assert not batch.behind, "changes it does not want never put it behind"
    assert [change.tickets for change in batch.changes] == [(1,)]


def test_it_refuses_subscribers_beyond_the_limit() -> None:
    first = hub.subscribe(resolve, limit=1)
    with pytest.raises(Busy):
        hub.subscribe(resolve, limit=1)
    first.close()
    hub.subscribe(resolve, limit=1).close()


def test_stopping_the_hub_ends_every_stream() -> None:
    sub = hub.subscribe(resolve)
    hub.stop()
    assert sub.wait(WAIT).closed


@pytest.mark.postgres_only
def test_a_notify_from_another_process_wakes_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    # Only a NOTIFY can end the hub's wait within the test's bound.
    monkeypatch.setattr(hub_module, "LISTEN_WAIT", 3600.0)
    sub = hub.subscribe(resolve)
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute(
            events.insert_sql("postgresql"), ["[5]", "message", "2026-01-01T00:00:00+00:00"]
        )
    (change,) = next_changes(sub)
    assert (change.kind, change.tickets) == ("message", (5,))


@pytest.mark.postgres_only
def test_an_event_that_commits_late_below_a_newer_one_is_still_handed_on() -> None:
    import psycopg

    publish([1], "earlier")  # the hub starts from a known id
    sub = hub.subscribe(resolve)
    params = connection.get_connection_params()
    with psycopg.connect(**params) as slow:
        # The slow transaction takes its id first, and commits last.
        slow.execute(events.insert_sql("postgresql"), ["[1]", "slow", "2026-01-01T00:00:00+00:00"])
        publish([2], "fast")
        (fast,) = next_changes(sub)
        assert fast.kind == "fast"
        assert hub.cursor < fast.id, "the cursor waits below the id still uncommitted"
        slow.commit()
    (late,) = next_changes(sub)
    assert (late.kind, late.id < fast.id) == ("slow", True)
    assert Event.objects.count() == 3


@pytest.mark.postgres_only
def test_the_hub_listens_again_after_its_connection_is_lost() -> None:
    import psycopg

    sub = hub.subscribe(resolve)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (mine,) = cursor.fetchone()
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as admin:
        # Every other session of the test database is the hub's.
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid NOT IN (pg_backend_pid(), %s)",
            [mine],
        ).fetchall()
    assert killed == [(True,)]
    publish([3], "message")
    (change,) = next_changes(sub)
    assert change.tickets == (3,)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's poll")
def test_on_sqlite_the_hub_reads_events_only_after_another_connection_commits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if another process published: no wake-up, only the commit.
    monkeypatch.setattr(events, "wake_local", lambda: None)
    sub = hub.subscribe(resolve)
    polls = threading.Semaphore(0)
    look = hub._committed_elsewhere

    def counted() -> bool:
        changed = look()
        polls.release()
        return changed

    monkeypatch.setattr(hub, "_committed_elsewhere", counted)
    for _ in range(2):  # the first look after start always reads; the second follows it
        assert polls.acquire(timeout=WAIT)
    reads = hub.reads
    for _ in range(5):
        assert polls.acquire(timeout=WAIT)
    assert hub.reads == reads, "nothing committed: nothing read"

    publish([3], "message")

    assert [change.tickets for change in next_changes(sub)] == [(3,)]
    assert hub.reads > reads
