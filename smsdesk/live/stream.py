"""One browser's Server-Sent Events stream: what it missed, then changes as they come.

A stream holds a request thread while it lasts but no database connection:
it waits on the hub, which does the reading. It ends after LIFETIME (with
some jitter, so browsers do not all come back at once); the browser then
reconnects by itself, sending the id of the last event it saw.

Messages:

    retry: 1000                 (once, first: reconnect after 1 s)
    id: 41                      (the browser hands this back as Last-Event-ID)
    event: change
    data: {"tickets": ["K7M2QX"], "kind": "message"}

    event: reset                (it missed more than can be replayed: refresh everything)

    : ping                      (a heartbeat, with the current id, every HEARTBEAT seconds)
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from django.db import connection

from .hub import Batch, Change, Resolver, Subscription, hub
from .models import Event

LIFETIME = 300.0  # seconds a stream lasts before the browser reconnects
HEARTBEAT = 10.0  # seconds between heartbeats; also how soon a closed page is noticed
RETRY_MS = 1000  # how long the browser waits before reconnecting
BUSY_RETRY_MS = 15000  # …when this process already holds its most streams
REPLAY_MAX = 500  # events replayed at most; a browser further behind refreshes everything
MAX_REFS = 100  # ticket refs named in one message to an inbox; the rest are counted
# What the inbox list does not show: who views a ticket, and how far an SMS
# got (a send reports twice: sent, then delivered). Its page hears of both.
NOT_FOR_INBOX = frozenset({"presence", "delivery"})


def max_streams() -> int | None:
    """Streams one process may hold: `smsdesk serve` sets this from its thread
    budget, so streams never take the threads requests need. Unset (the
    development and test servers, a thread per request): no limit."""
    value = os.environ.get("SMSDESK_LIVE_MAX_STREAMS", "")
    return int(value) if value.isdigit() else None


def replay(last_id: int, resolve: Resolver) -> list[Change] | None:
    """The changes after `last_id`, oldest first; None if the browser must refresh everything.

    None when events it missed were pruned, when it missed more than
    REPLAY_MAX, or when the id is from another database (higher than any).
    """
    ids = Event.objects.order_by("id").values_list("id", flat=True)
    oldest, newest = ids.first(), ids.last()
    if oldest is None or newest is None:
        return [] if last_id == 0 else None
    if last_id > newest or last_id < oldest - 1:
        return None
    rows = list(
        Event.objects.filter(id__gt=last_id)
        .order_by("id")
        .values_list("id", "tickets", "kind")[: REPLAY_MAX + 1]
    )
    if len(rows) > REPLAY_MAX:
        return None
    return hub.resolved(rows, resolve)


@dataclass
class Stream:
    """The stream of one browser; iterate it for the bytes to send."""

    sub: Subscription
    missed: list[Change] | None  # from replay(): None means a reset comes first
    ticket: tuple[int, str] | None = None  # (id, ref) of the ticket page, if it is one
    on_end: Callable[[], None] = lambda: None
    skip: frozenset[int] = frozenset()  # events not to send (this page's own arrival)
    lifetime: float = field(default_factory=lambda: LIFETIME * random.uniform(0.8, 1.0))
    heartbeat: float = field(default_factory=lambda: HEARTBEAT)
    ended: bool = field(default=False, init=False)

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.run()
        finally:
            self.close()

    def close(self) -> None:
        """The response is done (Django calls this even if it was never iterated)."""
        if not self.ended:
            self.ended = True
            self.sub.close()
            self.on_end()

    def run(self) -> Iterator[bytes]:
        # Everything from the database is in hand: a server with a thread per
        # request (runserver, the test server) would otherwise keep this
        # thread's connection open, idle, for the stream's whole life. (Under
        # `smsdesk serve` the request's connection went back with its slot.)
        # Not inside a transaction: a test's, say.
        if not connection.in_atomic_block:
            connection.close()
        cursor = hub.cursor
        opening = [f"retry: {RETRY_MS}\n\n".encode()]
        if self.missed is None:
            opening.append(reset(cursor))
        else:
            opening += [
                self.message(change, cursor) for change in self.missed if self.wants(change)
            ]
        opening.append(ping(cursor))
        yield b"".join(opening)
        replayed = {change.id for change in self.missed or []} | self.skip
        started = time.monotonic()
        beat = started + self.heartbeat
        while (now := time.monotonic()) < started + self.lifetime:
            batch = self.sub.wait(max(0.0, min(beat, started + self.lifetime) - now))
            if batch.closed:
                return
            out = self.messages(batch, replayed)
            if not out and time.monotonic() >= beat:
                out = ping(batch.cursor)
            if out:
                yield out
                beat = time.monotonic() + self.heartbeat

    def messages(self, batch: Batch, replayed: set[int]) -> bytes:
        if batch.behind:
            return reset(batch.cursor)
        return b"".join(
            self.message(change, batch.cursor)
            for change in batch.changes
            if change.id not in replayed and self.wants(change)
        )

    def wants(self, change: Change) -> bool:
        return self._wants(change)

    def __post_init__(self) -> None:
        self._wants = wanted_by(self.ticket)

    def message(self, change: Change, cursor: int) -> bytes:
        refs: Sequence[str] = [self.ticket[1]] if self.ticket else change.refs[:MAX_REFS]
        data: dict[str, object] = {"tickets": list(refs), "kind": change.kind}
        if len(change.refs) > len(refs) and not self.ticket:
            data["more"] = len(change.refs) - len(refs)
        # Never an id past the hub's cursor: an event that commits late below
        # it must still be replayed to a browser that reconnects.
        event_id = min(change.id, cursor)
        body = json.dumps(data, separators=(",", ":"))
        return f"id: {event_id}\nevent: change\ndata: {body}\n\n".encode()


def wanted_by(ticket: tuple[int, str] | None) -> Callable[[Change], bool]:
    """What a page hears of: a ticket page, its ticket; an inbox, what its list shows."""
    if ticket is not None:
        return lambda change: ticket[0] in change.tickets
    return lambda change: change.kind not in NOT_FOR_INBOX


def reset(cursor: int) -> bytes:
    return f"id: {cursor}\nevent: reset\ndata: {{}}\n\n".encode()


def ping(cursor: int) -> bytes:
    # An id with no data sets the browser's last event id without an event.
    return f": ping\nid: {cursor}\n\n".encode()


def busy() -> bytes:
    return f"retry: {BUSY_RETRY_MS}\n: busy\n\n".encode()


def parse_last_id(*values: str | None) -> int | None:
    """The first of the values that is a plausible event id (Last-Event-ID, then the query)."""
    for value in values:
        if value and value.isdigit() and len(value) < 19:
            return int(value)
    return None
