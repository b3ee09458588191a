"""Journal rows that webhooks store at the same moment, written in one INSERT.

A webhook is answered once its row is committed. One INSERT per webhook
made every webhook a commit of its own, and on SQLite a turn at the writer
lock of its own: at c=64 a turn lasted about 220 µs (timed in the web
processes), far longer than the statement, since the thread holding it
must get the interpreter back from the other requests under way after
each SQLite call. So the
webhooks of one process that reach this point while a write is under way
queue here; the next of them writes every queued row in one statement, and
each webhook is answered once the statement that holds its row is done.
Each row is as durable as before, and a webhook that finds nobody writing
is written at once: none waits for others to join it.

The statements go through one connection per process, the journal's own,
used by one writing webhook at a time: a webhook needs no connection of
its own, so `smsdesk serve` runs webhooks without a request slot
(smsdesk.live.gate), and a burst of them opens one connection per process
rather than one per request under way.

Only outside a transaction: inside one (a test's), a row must share its
fate, so InboundEvent.record writes it there itself.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

# Rows in one statement at most: PostgreSQL takes 65,535 parameters, SQLite
# 32,766, and a statement this long is already far past what batching buys.
MAX_ROWS = 64

# (connection, each row's values) → the SQL and parameters of one INSERT of them all
Statement = Callable[[BaseDatabaseWrapper, list[Sequence[Any]]], tuple[str, Sequence[Any]]]


@dataclass(eq=False)
class Row:
    """One webhook's row, and what became of it; its thread waits on `ready`."""

    values: Sequence[Any]
    ready: threading.Lock = field(default_factory=threading.Lock)
    error: BaseException | None = None
    leads: bool = False  # handed the writing of the queue rather than stored

    def __post_init__(self) -> None:
        self.ready.acquire()


class Journal:
    """The rows waiting in one process, and whether one of its threads is writing."""

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self.mutex = threading.Lock()
        self.queue: list[Row] = []
        self.writing = False
        self.connections: dict[str, BaseDatabaseWrapper] = {}  # by database alias

    def connection(self, alias: str) -> BaseDatabaseWrapper:
        """The journal's connection to that database; only the writing thread calls this."""
        if alias not in self.connections:
            connection = connections.create_connection(alias)
            connection.inc_thread_sharing()  # one thread at a time, not always the same
            self.connections[alias] = connection
        connection = self.connections[alias]
        # What Django's request signals do for a request's connection: one
        # that broke or outlived CONN_MAX_AGE is closed, and reopens on use.
        connection.close_if_unusable_or_obsolete()
        return connection

    def close(self) -> None:
        """Close the journal's connections (tests; they reopen when next needed)."""
        for connection in self.connections.values():
            connection.close()

    def store(self, alias: str, values: Sequence[Any]) -> None:
        """Return once a committed statement holds the row; raise what it failed with."""
        row = Row(values)
        with self.mutex:
            self.queue.append(row)
            leads = not self.writing
            self.writing = True
        if not leads:
            row.ready.acquire()  # the GIL is released while it waits
            if not row.leads:
                if row.error is not None:
                    raise row.error
                return
        self.write_queue(alias, row)

    def write_queue(self, alias: str, own: Row) -> None:
        # While nobody else writes, the queue is empty but for rows waiting
        # for this thread: its own is first.
        with self.mutex:
            batch, self.queue = self.queue[:MAX_ROWS], self.queue[MAX_ROWS:]
        try:
            connection = self.connection(alias)
            for row, error in zip(batch, self.write(connection, batch), strict=True):
                row.error = error
        except BaseException as exc:  # a failed reconnect, an interrupt: none may wait for ever
            for row in batch:
                row.error = row.error or exc
            raise
        finally:
            self.hand_on(batch, own)
        if own.error is not None:
            raise own.error

    def hand_on(self, batch: list[Row], own: Row) -> None:
        """Answer the rows written, and make the first row still queued the next writer."""
        with self.mutex:
            following = self.queue[0] if self.queue else None
            self.writing = following is not None
        for row in batch:
            if row is not own:
                row.ready.release()
        if following is not None:
            following.leads = True
            following.ready.release()

    def write(self, connection: BaseDatabaseWrapper, rows: list[Row]) -> list[BaseException | None]:
        try:
            self.execute(connection, rows)
            return [None] * len(rows)
        except Exception as exc:  # noqa: BLE001 - each webhook gets its own row's error
            if len(rows) == 1:
                return [exc]
        # One row may be at fault (a value the database refuses): each alone,
        # so that only its own webhook fails, and the provider sends it again.
        errors: list[BaseException | None] = []
        for row in rows:
            try:
                self.execute(connection, [row])
                errors.append(None)
            except Exception as exc:  # noqa: BLE001 - that webhook's answer is a 500
                errors.append(exc)
        return errors

    def execute(self, connection: BaseDatabaseWrapper, rows: list[Row]) -> None:
        journal_execute(connection, *self.statement(connection, [row.values for row in rows]))


def journal_execute(connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any]) -> None:
    """Run one statement on the driver's own cursor, as Django's cursor would run it.

    Django's CursorWrapper costs as much CPU as a journal INSERT; what it does
    that matters is done here too: the broken-transaction check, connecting
    on first use, and turning driver errors into Django's (which also marks
    the connection for the end-of-request check). Where something listens
    to queries (DEBUG, assertNumQueries, an execute wrapper), Django's cursor
    runs the statement so that it is seen.
    """
    if connection.queries_logged or connection.execute_wrappers:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        return
    connection.validate_no_broken_transaction()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    # On SQLite the INSERT waits its turn to write (smsdesk.db.sqlite3).
    turn = getattr(connection, "write_turn", nullcontext)
    with turn(), connection.wrap_database_errors:
        driver_cursor(connection).execute(driver_sql(sql, connection.vendor), params)


def driver_cursor(connection: BaseDatabaseWrapper) -> Any:
    """A cursor of the driver itself on this connection, kept while the connection lives."""
    kept = getattr(connection, "_smsdesk_cursor", None)
    if kept is not None and kept[0] is connection.connection:
        return kept[1]
    if connection.vendor == "postgresql":
        import psycopg

        # Server-side binding (Django's default cursor binds on the client):
        # less Python work per statement, and the values never become SQL text.
        cursor = psycopg.Cursor(connection.connection)
    else:
        cursor = connection.connection.cursor()
    connection._smsdesk_cursor = (connection.connection, cursor)  # type: ignore[attr-defined]
    return cursor


@functools.cache
def driver_sql(sql: str, vendor: str) -> str:
    # sqlite3 takes qmark placeholders; Django's SQLite cursor rewrites them on every call.
    return sql.replace("%s", "?") if vendor == "sqlite" else sql
