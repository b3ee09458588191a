"""The hub: one thread per process reads new events once and hands them to every live stream.

Two hundred open inboxes cost one database read per change, not two
hundred: the hub reads the Event rows, resolves their tickets' refs in one
query, appends the result to an in-memory backlog and wakes the streams
that want one of the changes (a ticket page, its ticket's). Streams only
wait on a flag of their own, with no database connection.

It learns of new rows from PostgreSQL's NOTIFY (sent by publish() at
commit), or on SQLite by a short poll, as the worker and other web
processes write them; a commit in this process wakes it at once. The poll
asks SQLite's data_version, which only moves when another connection
commits, and reads the events only then: an open page on a quiet desk
costs a few microseconds per poll instead of a query (~1 ms of CPU each,
~40 ms per second per web process).

Ids are handed out at INSERT and committed in another order, so on
PostgreSQL a row can appear below one already seen. The hub keeps a cursor
below which every id has been handed on, remembers the missing ids above it
for GAP_WAIT seconds and hands them on if they appear; the ids it gives
browsers never pass that cursor, so a reconnecting browser is sent anything
that committed late. (SQLite commits one writer at a time: no such gaps.)
"""

from __future__ import annotations

import itertools
import logging
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from django.db import DatabaseError, connection
from django.db.models import Q

from . import events, presence
from .models import Event

log = logging.getLogger(__name__)

Resolver = Callable[[Sequence[int]], Mapping[int, str]]  # ticket ids → refs

POLL = 0.025  # SQLite: seconds between looks for commits by other connections
READ_GAP = 0.05  # seconds between reads at least, so that bursts wake the streams once
STREAM_GAP = 0.001  # and a millisecond more per open stream: 100 pages, 0.1 s
LISTEN_WAIT = 5.0  # PostgreSQL: longest wait for a NOTIFY before looking anyway
IDLE_POLL = 1.0  # seconds between looks while no stream is connected
IDLE_EXIT = 60.0  # the thread ends after this long without streams
GAP_WAIT = 5.0  # seconds a missing id may still commit (PostgreSQL)
MAX_GAPS = 1000  # missing ids tracked at once; a wider hole is skipped over
READ_LIMIT = 1000  # events read per look
BACKLOG = 2000  # changes kept for streams that are a little behind
REFRESH = 15.0  # seconds between presence refreshes (presence.FRESH is 3 × this)
RETRY = 1.0  # seconds before trying again after a database error
RESOLVE_CHUNK = 500  # ticket ids per ref query (SQLite limits a statement's parameters)


class Busy(Exception):
    """This process already holds as many streams as it may."""


@dataclass(frozen=True)
class Change:
    """One Event row, with its tickets' refs (tickets deleted since are left out)."""

    id: int
    kind: str
    tickets: tuple[int, ...]
    refs: tuple[str, ...]


@dataclass(frozen=True)
class Batch:
    """What a stream gets from one wait."""

    changes: list[Change]
    cursor: int  # every event id up to this one has been handed on
    behind: bool = False  # the stream fell behind the backlog: it must reset
    closed: bool = False  # the hub stopped: the stream must end


class Alarm:
    """A wake-up other threads can ring, waited on together with a socket (a self-pipe).

    One per process, never closed: a ring after a close could land in
    whatever file took over the descriptor.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()  # a forked child needs a pipe of its own
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def ring(self) -> None:
        try:
            os.write(self._write, b"!")
        except BlockingIOError:
            pass  # the pipe is full of rings already

    def wait(self, timeout: float, sock: int | None = None) -> bool:
        """Until rung, `sock` is readable or `timeout` seconds pass; then forget the rings.

        Returns whether it was rung.
        """
        poller = select.poll()
        poller.register(self._read, select.POLLIN)
        if sock is not None:
            poller.register(sock, select.POLLIN)
        poller.poll(timeout * 1000)
        rung = False
        try:
            while os.read(self._read, 4096):
                rung = True
        except BlockingIOError:
            pass
        return rung


class Subscription:
    """One stream's place in the hub's backlog, and its wake-up."""

    def __init__(self, hub: Hub, position: int, wants: Callable[[Change], bool]) -> None:
        self.hub = hub
        self.position = position  # how many changes the hub had handed on when this one last looked
        self.wants = wants
        self.news = threading.Event()  # set when a change it wants comes
        self.ended = False  # by the hub, which stopped
        self.closed = False  # by its stream

    def wait(self, timeout: float) -> Batch:
        """The changes it wants since the last wait, waiting up to `timeout` seconds for some."""
        return self.hub.changes(self, timeout)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub.unsubscribe(self)


def everything(change: Change) -> bool:
    return True


class Hub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._alarm: Alarm | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False  # shutting down: no new streams
        self._subs: set[Subscription] = set()
        self._idle_since = time.monotonic()
        self._resolve: Resolver | None = None
        self._backlog: deque[Change] = deque(maxlen=BACKLOG)
        self._position = 0  # changes handed on since the process started
        self._cursor = 0
        self._top = 0  # the highest id read
        self._seen: set[int] = set()  # ids above the cursor already handed on
        self._gaps: dict[int, float] = {}  # ids above the cursor not seen yet → since when
        self._tokens: set[str] = set()  # presence rows of this process's streams
        self._leaving: list[str] = []
        self._more = False  # the last read stopped at READ_LIMIT
        self._refreshed = 0.0
        self._version: int | None = None  # SQLite's data_version at the last read
        self.reads = 0  # database reads of events, for tests and curiosity

    # The streams' side

    def subscribe(
        self,
        resolve: Resolver,
        wants: Callable[[Change], bool] = everything,
        limit: int | None = None,
        timeout: float = 10.0,
    ) -> Subscription:
        """Receive the changes `wants` picks from now on; starts the thread if need be.

        Raises Busy if `limit` streams are subscribed already.
        """
        with self._lock:
            if self._closed or (limit is not None and len(self._subs) >= limit):
                raise Busy
            self._resolve = resolve
            if self._thread is None:
                self._start()
            ready = self._ready
            sub = Subscription(self, self._position, wants)
            self._subs.add(sub)
        if not ready.wait(timeout):
            sub.close()
            raise DatabaseError("the live hub could not read the events table")
        with self._lock:
            sub.position = self._position
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)
            if not self._subs:
                self._idle_since = time.monotonic()

    def changes(self, sub: Subscription, timeout: float) -> Batch:
        # Each stream waits on its own flag, set only for changes it wants:
        # a change to one ticket wakes that ticket's pages, not every inbox.
        sub.news.wait(timeout)
        with self._lock:
            if sub.ended:
                return Batch([], self._cursor, closed=True)
            sub.news.clear()
            behind = self._position - sub.position
            sub.position = self._position
            if behind > len(self._backlog):
                return Batch([], self._cursor, behind=True)
            start = len(self._backlog) - behind
            fresh = itertools.islice(self._backlog, start, None)
            return Batch([change for change in fresh if sub.wants(change)], self._cursor)

    @property
    def cursor(self) -> int:
        with self._lock:
            return self._cursor

    def track(self, token: str) -> None:
        """Keep this presence row fresh while its stream lasts."""
        with self._lock:
            self._tokens.add(token)

    def untrack(self, token: str) -> None:
        """The stream ended: the hub deletes its presence row (and says so) shortly."""
        with self._lock:
            self._tokens.discard(token)
            self._leaving.append(token)
        self.wake()

    # The thread

    def _start(self) -> None:
        if self._alarm is None or self._alarm.pid != os.getpid():
            self._alarm = Alarm()
        self._stopping = False
        # A fresh flag per thread: one that is ending must not clear its successor's.
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._ready,), name="live-hub", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread and every stream (at shutdown, and between tests)."""
        with self._lock:
            thread = self._thread
            self._stopping = True
            for sub in self._subs:
                sub.ended = True
                sub.news.set()
            self._subs.clear()
        self.wake()
        if thread is not None:
            thread.join(timeout)
        with self._lock:
            if self._thread is thread:
                self._thread = None

    def shut(self) -> None:
        """The process is stopping: end every stream now and accept no new ones.

        Never blocks, so a signal handler may call it: the server waits for
        open responses before it exits, and a stream would otherwise run out
        its lifetime.
        """
        with self._lock:
            self._closed = True
        self.stop(timeout=0)

    def wake(self) -> None:
        """Look for new events now (publish() in this process calls it after commit)."""
        alarm = self._alarm
        if alarm is not None and alarm.pid == os.getpid():
            alarm.ring()

    def _run(self, ready: threading.Event) -> None:
        events.listen_local(self.wake)
        try:
            while not self._should_exit():
                try:
                    self._loop(ready)
                except DatabaseError:
                    log.warning("live hub: database error; retrying", exc_info=True)
                    connection.close()
                    self._sleep(RETRY)
                except Exception:  # noqa: BLE001 - a bug must not silence every inbox for good
                    log.exception("live hub failed; retrying")
                    connection.close()
                    self._sleep(RETRY)
        finally:
            events.unlisten_local(self.wake)
            try:
                self._leave()
            except DatabaseError:
                log.warning("live hub: could not delete presence rows", exc_info=True)
            connection.close()

    def _loop(self, ready: threading.Event) -> None:
        listening = self._listen()
        self._version = None  # a new connection counts from its own start
        if not ready.is_set():
            self._start_at_top()
            ready.set()
        else:
            self._read()  # catch up after an error
        while not self._should_exit():
            if not self._wait(listening):
                self._upkeep()
                continue
            started = time.monotonic()
            handed_on = self._read()
            self._upkeep()
            if handed_on:
                # Changes that come quickly one after another (a busy worker
                # commits many batches a second) go out together: every
                # stream wakes at most once per gap. Each wake-up costs every
                # open stream its turn on the GIL, so the gap grows with them.
                with self._lock:
                    gap = max(READ_GAP, STREAM_GAP * len(self._subs))
                time.sleep(max(0.0, started + gap - time.monotonic()))

    def _should_exit(self) -> bool:
        with self._lock:
            if self._thread is not threading.current_thread():
                return True  # stopped, and a successor may run already
            idle = not self._subs and time.monotonic() - self._idle_since > IDLE_EXIT
            if self._stopping or idle:
                self._thread = None
                return True
            return False

    def _listen(self) -> bool:
        connection.ensure_connection()
        if connection.vendor != "postgresql":
            return False
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {events.CHANNEL}")
        return True

    def _wait(self, listening: bool) -> bool:
        """Until there may be new events; returns whether to read them."""
        with self._lock:
            idle = not self._subs
            busy = bool(self._leaving) or self._more
        if busy:
            return True
        if not listening:
            rung = self._sleep(IDLE_POLL if idle else POLL)
            # A ring is a commit in this process, perhaps on this thread's
            # own connection (a presence row left), which data_version
            # does not count; ids still missing must be waited for.
            return rung or bool(self._gaps) or self._committed_elsewhere()
        # A NOTIFY from any process ends the wait, as does a commit or a stop
        # in this one. Notifications that arrived during the last read are
        # already in psycopg's hands, not on the socket: those end it too.
        raw = connection.connection
        # Django's error types (DatabaseError), as for any query: a lost
        # connection is then retried like one.
        with connection.wrap_database_errors:
            if sum(1 for _ in raw.notifies(timeout=0)):
                return True
            self._sleep(LISTEN_WAIT, raw.pgconn.socket)
            for _ in raw.notifies(timeout=0):
                pass
        return True

    def _sleep(self, seconds: float, sock: int | None = None) -> bool:
        assert self._alarm is not None, "set by _start()"
        return self._alarm.wait(seconds, sock)

    def _committed_elsewhere(self) -> bool:
        """SQLite: whether another connection committed since the last look."""
        connection.ensure_connection()
        with connection.wrap_database_errors:
            version = int(connection.connection.execute("PRAGMA data_version").fetchone()[0])
        changed = version != self._version
        self._version = version
        return changed

    # Reading events

    def _start_at_top(self) -> None:
        """Begin after the newest event; recent missing ids may still commit.

        Only ids above the oldest row kept count as missing: those below were pruned.
        """
        ids = Event.objects.order_by("id").values_list("id", flat=True)
        top, oldest = ids.last() or 0, ids.first() or 0
        recent = set(ids.filter(id__gt=top - 100))
        now = time.monotonic()
        self._top = top
        self._seen = recent
        self._gaps = {pk: now for pk in range(max(oldest, top - 99), top) if pk not in recent}
        self._advance(now)

    def _read(self) -> int:
        """Hand on the events committed since the last read; returns how many."""
        wanted = Q(id__gt=self._top)
        if self._gaps:
            wanted |= Q(id__in=list(self._gaps))
        rows = list(
            Event.objects.filter(wanted)
            .order_by("id")
            .values_list("id", "tickets", "kind")[:READ_LIMIT]
        )
        self.reads += 1
        self._more = len(rows) == READ_LIMIT
        now = time.monotonic()
        fresh = [row for row in rows if row[0] > self._cursor and row[0] not in self._seen]
        ids = {row[0] for row in rows}
        top = max(ids | {self._top})
        # Below the first id ever seen nothing is known: no gaps there.
        if self._top and top - self._top <= MAX_GAPS:
            for pk in range(self._top + 1, top):
                if pk not in ids:
                    self._gaps.setdefault(pk, now)
        self._top = top
        for pk, _, _ in fresh:
            self._seen.add(pk)
            self._gaps.pop(pk, None)
        changes = self.resolved(fresh, self._resolve)
        with self._lock:
            self._advance(now)
            if changes:
                self._hand_on(changes)
        return len(changes)

    def _hand_on(self, changes: list[Change]) -> None:
        before = self._position
        self._backlog.extend(changes)
        self._position += len(changes)
        for sub in self._subs:
            if any(sub.wants(change) for change in changes):
                sub.news.set()
            elif sub.position == before:
                sub.position = self._position  # nothing for it: it is not behind

    def _advance(self, now: float) -> None:
        """Move the cursor up to the lowest id that may still commit."""
        for pk, since in list(self._gaps.items()):
            if now - since > GAP_WAIT:
                del self._gaps[pk]
        self._cursor = min(self._gaps) - 1 if self._gaps else self._top
        self._seen = {pk for pk in self._seen if pk > self._cursor}

    def resolved(
        self, rows: Sequence[tuple[int, list[int], str]], resolve: Resolver | None
    ) -> list[Change]:
        """Event rows as changes, with their tickets' refs: one query per RESOLVE_CHUNK tickets."""
        wanted = sorted({pk for _, tickets, _ in rows for pk in tickets})
        refs: dict[int, str] = {}
        if resolve is not None:
            for start in range(0, len(wanted), RESOLVE_CHUNK):
                refs.update(resolve(wanted[start : start + RESOLVE_CHUNK]))
        changes = []
        for pk, tickets, kind in rows:
            known = tuple(t for t in tickets if t in refs)
            changes.append(Change(pk, kind, known, tuple(refs[t] for t in known)))
        return changes

    # Presence and housekeeping

    def _upkeep(self) -> None:
        self._leave()
        if time.monotonic() - self._refreshed > REFRESH:
            self._refreshed = time.monotonic()
            with self._lock:
                tokens = list(self._tokens)
            presence.refresh(tokens)
            events.maybe_prune()

    def _leave(self) -> None:
        with self._lock:
            leaving, self._leaving = self._leaving, []
        if leaving:
            presence.leave(leaving)


hub = Hub()
