"""SQLite, with its writers queued on a lock file instead of SQLite's busy sleeps.

SQLite lets one connection write at a time. A writer that finds the lock
taken sleeps in SQLite's busy handler, 1, 2, 5, 10 … up to 100 ms between
tries, however soon the lock comes free: under a burst of webhooks, each
wait was rounded up to the next step of that ladder (docs/performance.md).
Here every transaction (at BEGIN) and every journal INSERT in autocommit
first takes an exclusive flock(2) on a file beside the database, and the
next writer wakes the moment the one before is done.

SQLite's own locking still decides who writes: the queue only orders the
writers that use it. One that does not (an ORM save in autocommit, another
program, the sqlite3 shell) is served by busy_timeout as before, and a
queued writer waiting for it does so in SQLite's busy handler, which gives
up after the timeout and so leaves the queue.

Each connection opens the lock file itself, as flock locks belong to the
open file: threads of one process queue too, and a second take by the
connection holding it (a journal INSERT inside a test's transaction) is a
no-op. The lock is only ever held inside a transaction or a single
statement, and the kernel drops it when a process dies.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    queue_fd: int | None = None
    queued = False

    def queue_path(self) -> str:
        return f"{self.settings_dict['NAME']}-writer"

    def join_write_queue(self) -> None:
        """Wait for this connection's turn to write (returns at once if it has it)."""
        if self.queued or self.is_in_memory_db():
            return
        if self.queue_fd is None:
            self.queue_fd = os.open(self.queue_path(), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.queue_fd, fcntl.LOCK_EX)  # the GIL is released while it waits
        self.queued = True

    def leave_write_queue(self) -> None:
        if self.queued and self.queue_fd is not None:
            fcntl.flock(self.queue_fd, fcntl.LOCK_UN)
        self.queued = False

    @contextmanager
    def write_turn(self) -> Iterator[None]:
        """One write statement in autocommit, in the queue; in a transaction, in its turn."""
        if self.in_atomic_block:
            yield
            return
        self.join_write_queue()
        try:
            yield
        finally:
            self.leave_write_queue()

    def _start_transaction_under_autocommit(self) -> None:
        self.join_write_queue()
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]  # not in Django's stubs
        except BaseException:
            self.leave_write_queue()
            raise

    def _commit(self) -> Any:
        try:
            return super()._commit()  # type: ignore[misc]  # not in Django's stubs
        finally:
            self.leave_write_queue()

    def _rollback(self) -> Any:
        try:
            return super()._rollback()  # type: ignore[misc]  # not in Django's stubs
        finally:
            self.leave_write_queue()

    def _close(self) -> Any:
        try:
            return super()._close()  # type: ignore[misc]  # not in Django's stubs
        finally:
            self.leave_write_queue()
            if self.queue_fd is not None:
                os.close(self.queue_fd)
                self.queue_fd = None
