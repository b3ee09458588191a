"""The worker: a plain loop that threads inbound texts and sends the outbox."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, partial

from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    transaction,
)
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from smsdesk.lib import http
from smsdesk.live.events import maybe_prune
from smsdesk.sms import providers
from smsdesk.sms.models import InboundEvent, work_available
from smsdesk.sms.providers import OutboundSms, ProviderError

from .inbound import receive, receive_all
from .models import Message

log = logging.getLogger(__name__)

BATCH = 200  # inbound events threaded per transaction
# Sends in flight at once, all on the worker's thread (http.Posts). Claims
# refill half of them at a time, and a claim costs about the same for 8 rows
# as for 32, so more at once means cheaper messages (docs/performance.md).
# MessageBird takes about 500 POSTs a second per account; past that its 429s
# slow us down.
SENDS_AT_ONCE = 64
SEND_BATCH = 200  # sends per pass, before the worker looks at the journal again
BATCH_RETRIES = 3  # a batch that lost a deadlock is tried this many times per pass
# Seconds between polls when idle. `serve` runs the worker in its own
# process, so webhooks from the web processes are only seen by polling; a
# wake-up in this process ends the wait early. A poll asks only for the
# newest journal and message ids (Idle), and looks for work (Floors.look)
# when either moved, or every FULL_POLL seconds for what no new row
# announces: a retry or a lease coming due.
IDLE_WAIT = 0.05
FULL_POLL = 1.0
# A pass costs more than the few texts it threads when they come a few at a
# time: a busy worker that went straight on after every pass took a text
# or two each time, and at c=1 spent 1.5–1.9 CPU-ms of its core per text
# to a ticket that exists (SQLite). So only a pass that threaded GATHER
# texts or a whole batch, or sent a whole batch, goes straight on (once it
# has given way, if it does); after a smaller one the worker waits
# IDLE_WAIT, as an idle one does, and takes what came meanwhile
# together: 0.24 CPU-ms per such text, three times the webhooks at c=1
# (one and a half times on PostgreSQL).
# A worker that falls behind finds GATHER texts at every pass and does not
# wait at all (docs/performance.md, "What keeping up costs").
GATHER = 10
# On PostgreSQL a text threaded, or a message sent, leaves its entry in the
# partial index it left (inbound_event_pending, message_outbox_due) until a
# VACUUM takes it out, and a scan from the index's start steps over every
# such entry before the first row that waits. Autovacuum lets a fifth of
# a table die before it vacuums, and on a large table it skips the indexes
# while under 2 % of its pages hold dead rows: a journal of ten million
# texts may carry two million such entries. With two million in each
# index a claim of 100 texts took 7.5 ms instead of 1.8, and a look for
# work 11.8 ms instead of 0.3 (bench/dead_entries.py). So the worker's
# scans start at a floor (Floors), FLOOR_SLACK before the first row that
# waited at its last look. Once a FULL_LOOK it looks from the indexes'
# start instead, for a row that came to wait with an older key: a text
# handed back by `smsdesk reprocess`, or a row whose commit came
# FLOOR_SLACK after the clock it was stamped by. Not more often: such a
# look reads the whole index, 120 MB of it on a journal of ten million,
# which took 9–78 ms a look (docs/performance.md).
FLOOR_SLACK = timedelta(seconds=10)
FULL_LOOK = 30.0
# SQLite has one writer at a time, and a batch holds the write lock for as
# long as it takes to thread. While the worker's batches come back full,
# new texts arrive as it threads them and they pile up (a burst: see
# BURST_BACKLOG), it takes smaller batches and leaves the lock to the
# webhooks this many times as long as each pass took: they are answered
# at once, the worker still threads at about a quarter of its pace, and
# once they stop coming it catches up at full pace (docs/performance.md).
# The whole pass, sends included: their claims and records take the lock
# too, and counting the batch alone left the webhooks' p99 at c=64 some
# 25 ms higher. Batches of 50 kept webhooks waiting long enough to show in
# their p99; 20 thread as fast.
GIVE_WAY = 3.0
BURST_BATCH = 20
# PostgreSQL writes in parallel, but the worker's passes run in a database
# process that its `nice` does not reach, and during a burst they took
# their share of the cores from the webhooks. There it gives way for five
# times as long as each pass took, in batches of 100: with no write lock
# to hold briefly, the larger batch threads a text for about half the CPU
# of one in a batch of 20. Each of the workers (serve starts one more than
# the cores) then works about a sixth of the time while webhooks pour in.
# Giving way for twice as long as the batch alone took, the p99 at c=64
# was some 30 ms higher, and a burst was confirmed a tenth faster
# (docs/performance.md).
GIVE_WAY_POSTGRES = 5.0
BURST_BATCH_POSTGRES = 100
# Giving way is for a burst the worker cannot keep up with anyway. A steady
# flow of a few hundred texts a second also fills the small batches as they
# come, yet at full pace the worker keeps up with it; giving way there
# made it fall further behind with every second the flow lasted (350
# texts/s on SQLite: 1.8–3.9 s behind after 20 s, against none; the
# sustained phase of bench/e2e.py). So it gives way only while at least
# BURST_BACKLOG texts wait, and never once the oldest has waited MAX_LAG
# seconds: from then on it threads at full pace until it has caught up,
# whatever keeps coming. A flood it cannot keep up with even at full pace
# then costs the webhooks their share of the cores, rather than costing
# every text a wait that grows for as long as the flood lasts.
BURST_BACKLOG = 200
MAX_LAG = 10.0
# Nor for a flow the workers could keep up with at full pace. Giving way
# slows them, so the backlog grows under such a flow as it does in a
# burst: after 20 s of a steady 1,000 texts/s the last text was confirmed
# 2.5–7.5 s after the last webhook, against 0.1–1.9 s with no give-way,
# and the webhooks were answered no faster on SQLite and only a few ms
# faster on PostgreSQL (docs/performance.md). So, once there is a window
# of BACKLOG_CHECK seconds to tell by, the worker gives way only while
# texts arrive more than KEEP_UP times as fast as the workers would
# thread them at full pace: bursts at c=64 came at least 1.5 times as
# fast, a steady flow the workers kept up with at most 1.1 times.
KEEP_UP = 1.25
# Except in a flood: texts arriving faster than FLOOD a second, twice the
# flow the workers are built to keep up with, come from a provider
# replaying its backlog after an outage or from a broadcast answered all
# at once, not from a support line's own traffic. There the webhooks come
# first even when the workers could keep up: a provider whose webhooks
# time out sends them all again, and MAX_LAG still bounds how long a text
# waits. Texts to existing tickets are cheap to thread (no ticket, no
# confirmation), and keeping up with a flood of them took the cores from
# the webhooks: on SQLite their p99 was 32 ms at c=16 and 47–55 ms at
# c=64, against 11 and 26–32 ms giving way (docs/performance.md).
FLOOD = 2000.0
# A flood the worker keeps up with can hide itself on SQLite. Batches that
# hold the write lock most of the time hold the webhooks back, and a
# provider (or wrk) that sends a few at a time then gets them answered no
# faster than the worker threads them: fewer than FLOOD a second, never
# BURST_BACKLOG waiting, so the worker sees a flow it keeps up with and
# never gives way. At c=16 a 5-second run of new numbers settled there
# throughout in about one run of six (1,434–1,545 webhooks/s against
# 3,400–4,400), and for part of it in one of four (docs/performance.md).
# So a worker that has worked without a lull for PROBE_EVERY seconds, with
# texts still coming, steps aside once for PROBE seconds: time enough for
# a flow of FLOOD a second to leave BURST_BACKLOG waiting. A flood that
# was held back then shows itself, and a flow it keeps up with costs its
# texts that much more wait once in a while.
PROBE_EVERY = 1.0
PROBE = 0.1
# While giving way the worker threads in batches of BURST_BATCH, and on
# SQLite a text in a batch of 20 costs its worker three times what it
# costs in one of 200 (bench/passes.py: 0.80 against 0.26 CPU-ms), so
# what it threads while giving way is scaled up by that much: unscaled,
# a steady 1,000 texts/s that SQLite's worker keeps up with at full pace
# looked like one it could not. On PostgreSQL batches of 100 and 200 cost
# the same.
BURST_COST = 3.0
# A worker that found itself falling behind looks again at most this often,
# not after each small batch: during a burst that would be some ten more
# queries a second for each worker, for an answer that changes more slowly.
BACKLOG_CHECK = 0.5
# A worker giving way looks this often whether webhooks still come, and
# goes back to work as soon as none came since its last look: the burst is
# over, and what it left is threaded at full pace. Sitting out the rest of
# each pause (five times the pass on PostgreSQL, its sends included) left
# the cores idle after a burst: on PostgreSQL a burst of 5,000 was
# confirmed at 986–1,089/s, against 1,286–1,292/s with the look. Looking
# every 0.1 s, the webhooks' p99 at c=64 rose in every run: a tenth of a
# second with no webhook stored happens in a flood too (docs/performance.md).
GIVE_WAY_LOOK = 0.2
BACKOFF_BASE = 5.0
BACKOFF_CAP = 3600.0
RETRY_AFTER_CAP = 86400.0  # the longest wait a provider's Retry-After may ask for

# Errors that are nobody's fault: a deadlock victim, a serialization failure,
# a busy SQLite or a lost connection. The work is retried, never blamed on an event.
TRANSIENT = (OperationalError, InterfaceError)


def process_inbound(limit: int = BATCH, since: datetime | None = None) -> int:
    """Thread pending journal events into tickets, oldest first. Returns how many.

    A batch per transaction, claimed with SKIP LOCKED (PostgreSQL) so parallel
    workers never thread the same event; receive_all takes its locks in a
    fixed order, so two workers cannot deadlock on the same new numbers, and
    if one still loses a deadlock the batch is rolled back and tried again.
    A batch that fails otherwise is rolled back and its events are threaded
    one by one: the failing event keeps its error and is left for an
    operator to re-process, the others carry on. `since`: only texts
    received no earlier (Floors).
    """
    events: list[InboundEvent] = []
    for attempt in range(1, BATCH_RETRIES + 1):
        try:
            with transaction.atomic():
                events = claim_events(limit, since)
                if not events:
                    return 0
                receive_all(events)
            return len(events)
        except TRANSIENT:
            if attempt == BATCH_RETRIES:
                raise  # run() waits a moment and tries again
            log.info("inbound batch rolled back (attempt %d); retrying", attempt, exc_info=True)
        except Exception:  # noqa: BLE001 - one bad event must not hold up the rest
            log.warning("inbound batch failed; threading its events one by one", exc_info=True)
            return sum(thread_one(event.pk) for event in events)
    raise AssertionError("unreachable")


def claim_events(limit: int, since: datetime | None = None) -> list[InboundEvent]:
    claim = claimable() if since is None else claimable().filter(received_at__gte=since)
    return list(claim[:limit])


@cache
def claimable() -> QuerySet[InboundEvent]:
    """The claim's query, built once: a steady flow claims a few events at a time."""
    pending = InboundEvent.pending().select_for_update(skip_locked=True)
    # The raw request is for audit and re-processing; threading never reads it.
    return pending.defer("raw")


def thread_one(event_id: int) -> int:
    """Thread one event in its own transaction, recording its error if it fails. 1 if taken."""
    with transaction.atomic():
        event = claimable().filter(pk=event_id).first()
        if event is None:
            return 0  # another worker took it meanwhile
        try:
            with transaction.atomic():
                receive(event)
        except TRANSIENT:
            # No fault of the event: let the pass fail and leave it pending.
            raise
        except Exception as exc:  # noqa: BLE001 - any bug must leave the event visible, not lost
            log.exception("could not thread inbound event %s", event.pk)
            InboundEvent.objects.filter(pk=event.pk).update(error=f"{type(exc).__name__}: {exc}")
    return 1


def backoff(attempts: int) -> timedelta:
    """Exponential with jitter, so a recovering provider is not hit all at once.

    Waits between half and all of BACKOFF_BASE * 2**(attempts-1), capped at
    BACKOFF_CAP, so each wait is at least as long as the one before.
    """
    # Clamped, as a long outage takes attempts past where 2**n fits a float.
    exponent = min(max(attempts - 1, 0), 32)
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2**exponent)
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def send_due(limit: int = SEND_BATCH, since: datetime | None = None) -> int:
    """Send due outbound messages, up to `limit`, SENDS_AT_ONCE at a time. Returns how many.

    Rows are claimed only as sends free up, so every claimed row is being
    sent at once: none waits behind a slow send while its lease
    (Message.LEASE) runs down, and a stalled send holds up no one but its
    own row. Outcomes are recorded in bulk, a few UPDATEs per refill. The
    longest a claim lives is one send plus the wait for the sends beside
    it to end: two HTTP timeouts, well inside the lease. `since`: only
    messages due no earlier (Floors).
    """
    if not waits(None, first_due(since)):
        # Nothing due, as after most passes that thread texts to tickets
        # that exist: no claim, whose transaction costs three statements
        # and on SQLite a turn at the write lock, which the webhooks wait for.
        return 0
    provider = providers.outbound()
    sends = Sends(provider)
    finished: list[Outcome] = []
    claimed = 0
    more = True
    refill_at = 0
    try:
        while True:
            # Each time half of what was in flight is done: fewer, larger UPDATEs
            # and claims, also while the last sends of a pass trickle in.
            if len(sends) <= refill_at:
                record(provider, finished)
                finished = []
                wanted = min(SENDS_AT_ONCE - len(sends), limit - claimed)
                if more and wanted > 0:
                    batch = Message.claim_due(wanted, since)
                    more = len(batch) == wanted
                    claimed += len(batch)
                    for message in clear_to_send(batch):
                        sends.start(message)
                refill_at = len(sends) // 2
            if not sends:
                break
            finished += sends.finished()
        record(provider, finished)
    finally:
        # Only after an error: what is still in flight is let go, its rows
        # leased until a later pass sends them again.
        sends.abandon()
    return claimed


def clear_to_send(batch: list[Message]) -> list[Message]:
    """The claimed messages that may go now; the others cancelled or given back.

    An opted-out contact's messages are cancelled. A contact with texts still
    unthreaded in the journal might have just texted STOP: their messages
    wait for the threading, which runs before the next send (at most one
    loop). Both facts were read with the claim (Message.claim_due).
    """
    Message.cancel_claimed([message for message in batch if message.blocked])
    batch = [message for message in batch if not message.blocked]
    Message.defer_claimed([message for message in batch if message.held])
    return [message for message in batch if not message.held]


@dataclass(frozen=True)
class Outcome:
    message: Message
    provider_id: str | None = None  # set when sent
    error: str = ""
    permanent: bool = False
    retry_after: float | None = None


class Sends:
    """A pass's sends under way, all driven from the worker's own thread.

    Through a provider that sends over HTTP the POSTs go out together, each
    as soon as it starts (http.Posts); any other (the simulator) has sent
    by the time start() returns. The database work stays with the caller.
    """

    def __init__(self, provider: providers.Provider):
        self.provider = provider
        # The provider's two halves and this thread's POSTs, or None: sent at once.
        self.over_http = (
            (provider, posts()) if isinstance(provider, providers.SendsOverHttp) else None
        )
        self.ready: list[Outcome] = []

    def __len__(self) -> int:
        return len(self.ready) + (len(self.over_http[1]) if self.over_http else 0)

    def start(self, message: Message) -> None:
        sms = OutboundSms(
            to=message.ticket.contact.phone, body=message.body, reference=str(message.uuid)
        )
        if self.over_http is None:
            self.ready.append(attempt(message, partial(self.provider.send, sms)))
            return
        provider, in_flight = self.over_http
        try:
            in_flight.start(message, provider.request(sms))
        except Exception as exc:  # noqa: BLE001 - as in attempt()
            self.ready.append(unexpected(message, exc))

    def finished(self) -> list[Outcome]:
        """The sends that ended; while none has, waits for one (a second at most)."""
        done, self.ready = self.ready, []
        if self.over_http is not None:
            provider, in_flight = self.over_http
            for message, answer in in_flight.finished(0.0 if done else 1.0):
                done.append(attempt(message, partial(provider.sent, answer)))
        return done

    def abandon(self) -> None:
        self.ready = []
        if self.over_http is not None:
            self.over_http[1].abandon()


class ThreadPosts(threading.local):
    posts: http.Posts[Message] | None = None


_posts = ThreadPosts()


def posts() -> http.Posts[Message]:
    """This thread's POSTs in flight, kept from pass to pass with their connections."""
    if _posts.posts is None:
        _posts.posts = http.Posts()
    return _posts.posts


def attempt(message: Message, send: Callable[[], str]) -> Outcome:
    """One send; never raises. Transient failures are retried later, permanent ones fail."""
    try:
        return Outcome(message, provider_id=send())
    except ProviderError as exc:
        return Outcome(
            message, error=str(exc), permanent=exc.permanent, retry_after=exc.retry_after
        )
    except Exception as exc:  # noqa: BLE001 - a bug or bad setting must leave the row retried, not stranded
        return unexpected(message, exc)


def unexpected(message: Message, exc: Exception) -> Outcome:
    log.error("sending message %s failed unexpectedly", message.uuid, exc_info=exc)
    return Outcome(message, error=f"{type(exc).__name__}: {exc}")


def record(provider: providers.Provider, outcomes: list[Outcome]) -> None:
    """Write down a batch of send outcomes: an UPDATE per kind of outcome."""
    if not outcomes:
        return
    sent = [(o.message, o.provider_id) for o in outcomes if o.provider_id is not None]
    failed = [(o.message, o.error) for o in outcomes if o.provider_id is None and o.permanent]
    retries = [o for o in outcomes if o.provider_id is None and not o.permanent]
    for message, error in failed:
        log.warning("message %s failed for good: %s", message.uuid, error)
    with transaction.atomic():
        Message.mark_all_sent(provider.name, sent)
        Message.mark_all_failed(failed)
        Message.retry_all_later([(o.message, o.error, retry_delay(o)) for o in retries])


def retry_delay(outcome: Outcome) -> timedelta:
    delay = backoff(outcome.message.attempts)
    if outcome.retry_after is not None:
        # Honour the provider's wait, within reason: a huge value would
        # overflow the timestamp and break the worker's pass.
        delay = max(delay, timedelta(seconds=min(outcome.retry_after, RETRY_AFTER_CAP)))
    log.info(
        "message %s will be retried in %.0f s: %s",
        outcome.message.uuid,
        delay.total_seconds(),
        outcome.error,
    )
    return delay


def run_once() -> int:
    return process_inbound() + send_due()


def work_waiting(journal_from: datetime | None = None, outbox_from: datetime | None = None) -> bool:
    """Whether a pass would find anything to do: one query, the question Floors.look asks.

    An empty pass builds two ORM queries in two transactions, which on
    SQLite each take a turn at the write lock: about 1 CPU-ms on SQLite and
    2 on PostgreSQL, at every idle poll that finds a new row (Idle). This
    reads both indexes in one statement, outside a transaction. It may say
    yes when a pass then finds nothing (a row another worker claims first),
    never no when there is work at or after the floors given: its
    conditions are those of InboundEvent.pending() and Message.claim_due().
    """
    return waits(*first_waiting(journal_from, outbox_from))


def waits(pending: datetime | None, due: datetime | None) -> bool:
    """Whether a text waits or a message is due, by what first_waiting found."""
    return pending is not None or (due is not None and due <= timezone.now())


def first_waiting(
    journal_from: datetime | None = None, outbox_from: datetime | None = None
) -> tuple[datetime | None, datetime | None]:
    """When the first text waiting was received, and when the first message is due.

    Each from its partial index, at or after the floor given (Floors); a
    message is due only while it has a next attempt (message_outbox_due).
    Each asks for the first row in its index's order rather than whether
    one exists: PostgreSQL plans an EXISTS by its guess of how many rows
    match, and after a burst, with no statistics or with statistics taken
    during it, it guessed sequential scans, which read every text threaded
    and every message sent (6–36 ms a poll). The first in index order is a
    step into the index whatever it guesses.
    """
    journal_floor = " AND received_at >= %s" if journal_from else ""
    sql = (
        f"SELECT (SELECT received_at FROM {InboundEvent._meta.db_table}"
        f" WHERE processed_at IS NULL AND error = ''{journal_floor}"
        f" ORDER BY received_at, id LIMIT 1), {first_due_sql(outbox_from)}"
    )
    floors = [floor for floor in (journal_from, outbox_from) if floor]
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datetimefield_value(f) for f in floors])
        pending, due = cursor.fetchone()
    return read_time(pending), read_time(due)


def first_due(outbox_from: datetime | None = None) -> datetime | None:
    """When the first message is due (the outbox half of first_waiting)."""
    floors = [connection.ops.adapt_datetimefield_value(outbox_from)] if outbox_from else []
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {first_due_sql(outbox_from)}", floors)
        return read_time(cursor.fetchone()[0])


def first_due_sql(outbox_from: datetime | None) -> str:
    floor = " AND next_attempt_at >= %s" if outbox_from else ""
    return (
        f"(SELECT next_attempt_at FROM {Message._meta.db_table}"
        f" WHERE next_attempt_at IS NOT NULL{floor} ORDER BY next_attempt_at LIMIT 1)"
    )


def read_time(value: datetime | str | None) -> datetime | None:
    """A timestamp from a raw query: SQLite's come back naive or as text, in UTC."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def burst_batch() -> int:
    """Events per batch while giving way, and after a lull (see GIVE_WAY)."""
    return BURST_BATCH if connection.vendor == "sqlite" else BURST_BATCH_POSTGRES


def burst_cost() -> float:
    """What a text costs in a batch of burst_batch(), against one in a full batch."""
    return BURST_COST if connection.vendor == "sqlite" else 1.0


class Burst:
    """Tells whether webhooks keep coming while the worker has a backlog (see GIVE_WAY)."""

    def __init__(self, floors: Floors | None = None) -> None:
        self.floors = floors  # where its look at the backlog starts; None: the journal's start
        # The journal's newest id after the last full batch; None after a
        # lull, when there is nothing yet to tell growth from.
        self.newest: int | None = None
        self.batch = BATCH  # events to claim next
        self.catching_up = False  # the oldest text waited MAX_LAG: full pace until none waits
        self.behind_until = 0.0  # time.monotonic() until which falling_behind holds
        self.pace = Pace()
        # time.monotonic() since which it has worked at full pace without a
        # lull; None while it waits for texts (see PROBE_EVERY).
        self.busy_since: float | None = None

    def pause(self, threaded: int, took: float) -> float:
        """Seconds to leave to the webhooks after a pass: SQLite's write lock, or the cores.

        `threaded`: texts the pass threaded; `took`: seconds it took, sends included.
        """
        now = time.monotonic()
        if threaded < GATHER:
            self.busy_since = None  # it waits for texts now: nothing held back
        elif self.busy_since is None:
            self.busy_since = now
        if threaded < self.batch:
            # Whatever wakes the worker next may be the start of a burst.
            self.batch = burst_batch()
            self.newest = None
            self.catching_up = False
            self.behind_until = 0.0
            self.pace = Pace()
            return self.probe(now)
        newest, self.newest = self.newest, InboundEvent.newest_id()
        if newest is None:
            # The first full batch after a lull. A backlog that was already
            # there (a restart, a pile left by a burst) is no sign of
            # webhooks still coming: only texts that arrive during the next
            # batch are.
            return 0.0
        if self.newest <= newest or not self.falling_behind():
            # A backlog but nothing new, texts coming but not piling up, or
            # the oldest has waited MAX_LAG: full pace.
            self.batch = BATCH
            # Only texts still coming may be a flood held back, not a backlog.
            return self.probe(now) if self.newest > newest else 0.0
        self.batch = burst_batch()
        self.busy_since = now  # while it gives way, webhooks are not held back
        return took * (GIVE_WAY if connection.vendor == "sqlite" else GIVE_WAY_POSTGRES)

    def probe(self, now: float) -> float:
        """Seconds to step aside after PROBE_EVERY at full pace, for a flood to show (PROBE)."""
        if self.busy_since is None or self.catching_up or now - self.busy_since < PROBE_EVERY:
            return 0.0
        self.busy_since = now
        # The step aside is no give-way to scale the pace by, and what piles
        # up during it is to be told afresh, as at the start of a burst.
        self.pace = Pace()
        return PROBE

    def give_way(self, pause: float, stop: threading.Event) -> None:
        """Wait up to `pause` seconds, or until no text came for a GIVE_WAY_LOOK."""
        started = time.monotonic()
        newest = self.newest
        while (left := started + pause - time.monotonic()) > 0:
            if stop.wait(min(GIVE_WAY_LOOK, left)) or time.monotonic() - started >= pause:
                break
            latest = InboundEvent.newest_id()
            if latest == newest:
                break
            newest = latest
        # The time actually given way, which is what the pace scales by.
        self.pace.paused += time.monotonic() - started

    def falling_behind(self) -> bool:
        """Whether the backlog is a burst to give way to (see BURST_BACKLOG, KEEP_UP, FLOOD).

        That is: BURST_BACKLOG texts wait, none of them yet for MAX_LAG, and
        they arrive faster than the workers could thread them at full pace,
        or faster than FLOOD.
        """
        if self.catching_up:
            return False
        now = time.monotonic()
        if now < self.behind_until:
            return True
        waiting = InboundEvent.pending(self.floors.journal if self.floors else None)
        oldest = waiting.values_list("received_at", "id").first()
        if oldest is None:
            return False
        if timezone.now() - oldest[0] >= timedelta(seconds=MAX_LAG):
            self.catching_up = True
            return False
        # In the index's order: without it PostgreSQL may plan a scan of the
        # whole journal (see first_waiting).
        if not waiting.values_list("id", flat=True)[BURST_BACKLOG - 1 : BURST_BACKLOG]:
            return False
        if self.pace.keeps_up(now, self.newest or 0, oldest[1]):
            return False
        self.behind_until = now + BACKLOG_CHECK
        return True


class Pace:
    """How fast texts arrive, and how fast the workers would thread them at full pace.

    Told by the ids at the two ends of the journal's backlog: the newest
    moves as texts arrive, the oldest waiting as the workers thread them,
    all of them, in the order they came. Over a window of at least
    BACKLOG_CHECK seconds, the texts threaded are scaled up by the share of
    the window this worker spent giving way (each gives way for the same
    share of its time), and by what the smaller batches of giving way cost
    (BURST_COST): what the workers would have threaded had none of them
    paused.
    """

    def __init__(self) -> None:
        self.mark: tuple[float, int, int] | None = None  # (time.monotonic(), newest, oldest)
        self.paused = 0.0  # seconds given way since the mark
        self.verdict: bool | None = None  # from the last whole window; None before one

    def keeps_up(self, now: float, newest: int, oldest: int) -> bool | None:
        """Whether the workers keep up at full pace with a flow short of a FLOOD.

        By the last whole window; None: unknown yet.
        """
        if self.mark is None:
            self.mark, self.paused = (now, newest, oldest), 0.0
            return None
        then, newest_then, oldest_then = self.mark
        span = now - then
        if span >= BACKLOG_CHECK:
            working = max(span - self.paused, span / 10)
            arriving = (newest - newest_then) / span
            full_pace = (oldest - oldest_then) / working * (burst_cost() if self.paused else 1.0)
            self.verdict = arriving <= min(full_pace * KEEP_UP, FLOOD)
            self.mark, self.paused = (now, newest, oldest), 0.0
        return self.verdict


class Floors:
    """Where the worker's scans of the journal and the outbox start (see FLOOR_SLACK)."""

    def __init__(self) -> None:
        self.journal: datetime | None = None  # None: from the index's start
        self.outbox: datetime | None = None
        self.looked = -FULL_LOOK  # time.monotonic() of the last look from the start

    def full_look_due(self) -> bool:
        return time.monotonic() - self.looked >= FULL_LOOK

    def look(self) -> bool:
        """Whether work waits, from the floors or, once a FULL_LOOK, from the start.

        The floors follow what the look found: from where it started, no
        row waited before that, but one whose commit is still to come
        (FLOOR_SLACK).
        """
        full = self.full_look_due()
        pending, due = first_waiting() if full else first_waiting(self.journal, self.outbox)
        now = timezone.now()
        self.journal = min(pending or now, now) - FLOOR_SLACK
        self.outbox = min(due or now, now) - FLOOR_SLACK
        if full:
            self.looked = time.monotonic()
        return waits(pending, due)

    def keep(self) -> None:
        """Before a pass of a busy worker, which does not look: a look from the start when due."""
        if self.full_look_due():
            self.look()


class Idle:
    """Whether an idle worker should look for work (see IDLE_WAIT)."""

    def __init__(self, floors: Floors) -> None:
        self.floors = floors
        self.newest: tuple[int, int] | None = None  # the journal's and the messages' newest ids
        self.looked = 0.0  # time.monotonic() of the last look

    def look(self) -> bool:
        newest = newest_ids()
        now = time.monotonic()
        if newest == self.newest and now - self.looked < FULL_POLL:
            return False
        self.newest, self.looked = newest, now
        return self.floors.look()


def newest_ids() -> tuple[int, int]:
    """The newest journal event's id and the newest message's: one step into each primary key."""
    inbound, message = InboundEvent._meta.db_table, Message._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT (SELECT max(id) FROM {inbound}), (SELECT max(id) FROM {message})")
        journal, messages = cursor.fetchone()
    return journal or 0, messages or 0


def work(burst: Burst, floors: Floors) -> tuple[bool, float]:
    """One pass: a batch threaded, then what is due sent.

    Returns whether to go straight on to the next pass (see GATHER), and
    the seconds to give way first (Burst.pause).
    """
    floors.keep()
    started = time.monotonic()
    batch = burst.batch
    threaded = process_inbound(batch, floors.journal)
    sent = send_due(since=floors.outbox)
    pause = burst.pause(threaded, time.monotonic() - started)
    more = threaded >= min(GATHER, batch) or sent == SEND_BATCH
    return more or bool(pause), pause


def run(stop: threading.Event) -> None:
    """Work until `stop` is set; the current batch is always finished first."""
    log.info("worker started")
    floors = Floors()
    burst = Burst(floors)
    idle = Idle(floors)
    more = False
    while not stop.is_set():
        # Cleared before the pass, so work queued during it is not missed.
        work_available.clear()
        try:
            # After a pass that found little, the worker waits as an idle one
            # does (GATHER), and the next runs only when there is something
            # for it; an empty pass would change nothing (Burst is already
            # reset), so skipping it only saves its cost.
            if more or idle.look():
                more, pause = work(burst, floors)
                if pause:
                    burst.give_way(pause, stop)
        except DatabaseError:
            # A lost connection or a deadlock victim: nothing was committed,
            # the rows are still pending. Reconnect and try again shortly.
            log.exception("worker pass failed; retrying")
            close_old_connections()
            more = False
            stop.wait(1.0)
        except Exception:  # noqa: BLE001 - a bug must not end the worker; the rows stay pending
            log.exception("worker pass failed; retrying")
            more = False
            stop.wait(1.0)
        maybe_prune()  # old live events; real work at most once a minute
        if not more:
            work_available.wait(IDLE_WAIT)
    log.info("worker stopped")
