"""The WSGI application `smsdesk serve` runs: the desk, a few requests at a time.

A live stream (the inbox's Server-Sent Events) holds a server thread for as
long as its page is open, so `serve` gives each web process many threads.
Requests that use the database must still run only a few at a time, as
they did before there were streams: each would otherwise keep a database
connection of its own (a burst of webhooks at 64 connections opened ~90 on
PostgreSQL, whose default limit is 100).

So every such request first takes one of SMSDESK_REQUEST_SLOTS slots, and
a slot owns the database connections the request uses, whichever thread
runs it: a process keeps that many connections open, however many threads
its server has. A response that streams (a live stream, a static file) is
sent after its slot is given back: it waits on the hub or reads a file,
never the database.

Webhooks and /healthz take no slot. They use no connection of their own (a
webhook's row is written on the journal's, with those of the webhooks
arriving with it: smsdesk.sms.journal), and a request waiting here for a
slot cost the interpreter as much as running it (docs/performance.md).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from smsdesk.wsgi import answered_directly
from smsdesk.wsgi import application as desk

SLOTS = max(1, int(os.environ.get("SMSDESK_REQUEST_SLOTS", "4") or 4))

StartResponse = Callable[..., Any]


class Slot:
    """Database connections lent to whichever thread runs a request."""

    def __init__(self) -> None:
        self.wrappers: dict[str, BaseDatabaseWrapper] = {}

    def wrapper(self, alias: str) -> BaseDatabaseWrapper:
        if alias not in self.wrappers:
            wrapper = connections.create_connection(alias)
            # Used by one thread at a time, but not always the same one.
            wrapper.inc_thread_sharing()
            self.wrappers[alias] = wrapper
        return self.wrappers[alias]

    def lend(self) -> dict[str, BaseDatabaseWrapper]:
        """Make this thread use the slot's connections; returns the ones it had."""
        had = {wrapper.alias: wrapper for wrapper in connections.all(initialized_only=True)}
        for alias in connections:
            connections[alias] = self.wrapper(alias)
        return had

    def take_back(self, had: dict[str, BaseDatabaseWrapper]) -> None:
        for alias in connections:
            if alias in had:
                connections[alias] = had[alias]
            else:
                del connections[alias]


class Slots:
    """The request slots, handed out first come, first served.

    A queue.Queue lets a newly arrived request take a slot given back while
    an earlier one, already woken for it, waits for the interpreter lock:
    under a burst the unlucky waited many times the median (webhooks at
    c=64: p99 over four times p50). Here a slot given back goes straight to
    the longest waiter.
    """

    def __init__(self, n: int) -> None:
        self.lock = threading.Lock()
        # Last in, first out: the connection used last is the one likely still warm.
        self.free = [Slot() for _ in range(n)]
        self.waiting: deque[Waiter] = deque()

    def take(self) -> Slot:
        with self.lock:
            if self.free:
                return self.free.pop()
            waiter = Waiter()
            self.waiting.append(waiter)
        return waiter.wait()

    def give(self, slot: Slot) -> None:
        with self.lock:
            if self.waiting:
                self.waiting.popleft().hand(slot)
            else:
                self.free.append(slot)

    @contextmanager
    def hold(self) -> Iterator[None]:
        slot = self.take()
        had = slot.lend()
        try:
            yield
        finally:
            slot.take_back(had)
            self.give(slot)


class Waiter:
    """One request waiting for a slot: blocked on a lock of its own until handed one."""

    def __init__(self) -> None:
        self.ready = threading.Lock()
        self.ready.acquire()
        self.slot: Slot | None = None

    def hand(self, slot: Slot) -> None:
        self.slot = slot
        self.ready.release()

    def wait(self) -> Slot:
        self.ready.acquire()
        assert self.slot is not None
        return self.slot


slots = Slots(SLOTS)


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if answered_directly(environ):
        # A webhook or /healthz: no connection of its own to lend, and a
        # thread waiting here costs as much as running it (docs/performance.md).
        return desk(environ, start_response)
    with slots.hold():
        response = desk(environ, start_response)
        if isinstance(response, list) or getattr(response, "streaming", False):
            return response  # a list is complete (and granian sends it in one write)
        # Read and closed inside the slot: closing sends request_finished,
        # which looks after the slot's database connection.
        try:
            return [b"".join(response)]
        finally:
            close = getattr(response, "close", None)
            if close is not None:
                close()
