"""Dead index entries benchmark: what the worker's scans cost on PostgreSQL between VACUUMs.

A text threaded leaves its entry in the journal's index of waiting texts
(inbound_event_pending), and a message sent its entry in the outbox's
index of due messages (message_outbox_due), until a VACUUM takes it out.
Autovacuum lets a large table reach millions of them (docs/performance.md).
This fills a fresh PostgreSQL database with D such entries, as if D texts
had been threaded and D messages sent at --rate a second until now, puts
100 texts and 100 messages waiting after them, and times, in this process,
the worker's three scans of those indexes: a claim of 100 texts, a claim
of 20 messages, and the idle worker's look for work. Each is timed from
the index's start, as a full look scans, and from the worker's floors
(worker.Floors), as its other scans do: the first call, and the median of
--samples more. The claims are rolled back, so every sample finds the
same rows.

    .venv/bin/python bench/dead_entries.py --dead 0 200000 1000000 2000000

SQLite takes an index entry out when its row changes, so this is for
PostgreSQL only. The database (smsdesk_bench_dead_*) is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import common

if TYPE_CHECKING:
    from django.db.backends.utils import CursorWrapper

LIVE = 100  # texts and messages waiting after the dead entries


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dead",
        type=int,
        nargs="+",
        default=[0, 200_000, 1_000_000, 2_000_000],
        help="dead entries in each index, in rising order",
    )
    parser.add_argument(
        "--rate", type=float, default=1000.0, help="texts a second the dead entries came at"
    )
    parser.add_argument("--samples", type=int, default=30, help="timed calls after the first")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.dead != sorted(args.dead):
        sys.exit("--dead: counts in rising order")
    with (
        tempfile.TemporaryDirectory(prefix="smsdesk-bench-") as tmp,
        common.database("postgres", Path(tmp), "dead") as database_url,
    ):
        common.manage(database_url, "migrate", "-v0")
        os.environ.update(DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="smsdesk.settings")
        import django

        django.setup()
        measure(args)


def measure(args: argparse.Namespace) -> None:
    from django.db import connection

    from smsdesk.desk import worker
    from smsdesk.desk.models import Contact, Ticket, new_ref

    ticket = Ticket.objects.create(ref=new_ref(), contact=Contact.objects.create(phone="+3161"))
    print(f"{'dead entries':>12}  {'scan':<14}  {'first ms':>8}  {'median ms':>9}  scans from")
    made = 0
    for dead in args.dead:
        with connection.cursor() as cursor:
            add_dead(cursor, made, dead - made, args.rate, ticket.pk)
            add_live(cursor, ticket.pk)
        made = dead
        floors = worker.Floors()
        floors.look()
        for name, scan in SCANS.items():
            for floored in (False, True):
                since = (floors.journal, floors.outbox) if floored else (None, None)
                first, median = timed(partial(scan, *since), args.samples)
                where = "the floors" if floored else "the indexes' start"
                print(f"{dead:>12,}  {name:<14}  {first:8.2f}  {median:9.2f}  {where}", flush=True)


def claim_texts(journal: datetime | None, outbox: datetime | None) -> None:
    from django.db import transaction

    from smsdesk.desk import worker

    with transaction.atomic():
        worker.claim_events(LIVE, journal)
        transaction.set_rollback(True)


def claim_messages(journal: datetime | None, outbox: datetime | None) -> None:
    from django.db import transaction

    from smsdesk.desk.models import Message

    with transaction.atomic():
        Message.claim_due(20, outbox)
        transaction.set_rollback(True)


def look(journal: datetime | None, outbox: datetime | None) -> None:
    from smsdesk.desk import worker

    worker.work_waiting(journal, outbox)


SCANS: dict[str, Callable[[datetime | None, datetime | None], None]] = {
    "claim 100 texts": claim_texts,
    "claim 20 sends": claim_messages,
    "look for work": look,
}


# The columns a message row must have, and their values for these rows.
MESSAGE = {
    "uuid": "gen_random_uuid()",
    "ticket_id": "%(ticket)s",
    "direction": "'out'",
    "body": "'Thanks, we got your text'",
    "created": "now()",
    "provider": "''",
    "provider_message_id": "''",
    "status": "'queued'",
    "attempts": "0",
    "last_error": "''",
    "encoding": "''",
    "purpose": "''",
    "status_error_code": "''",
    "status_reason": "''",
}


def insert_messages(next_attempt_at: str, rows: str) -> str:
    columns = ", ".join([*MESSAGE, "next_attempt_at"])
    values = ", ".join([*MESSAGE.values(), next_attempt_at])
    return f"INSERT INTO desk_message ({columns}) SELECT {values} FROM {rows}"


def add_dead(cursor: CursorWrapper, start: int, count: int, rate: float, ticket_id: int) -> None:
    """`count` texts threaded and messages sent, the newest a moment ago, `rate` a second.

    The texts and messages that waited before are threaded and sent too.
    """
    # Keyed as they would have come: the newest few seconds of them lie
    # after the floor, which is FLOOR_SLACK before the first live row.
    for sql in (
        """INSERT INTO sms_inboundevent
             (provider, key, sender, recipient, text, raw, received_at, error)
           SELECT 'messagebird', 'dead' || g, '+3162' || lpad((g %% 1000000)::text, 7, '0'),
                  '', 'dead', '{}', now() - (%(end)s - g) / %(rate)s * interval '1 second', ''
           FROM generate_series(%(start)s, %(end)s - 1) g""",
        insert_messages(
            "now() - (%(end)s - g) / %(rate)s * interval '1 second'",
            "generate_series(%(start)s, %(end)s - 1) g",
        ),
    ):
        cursor.execute(
            sql, {"start": start, "end": start + count, "rate": rate, "ticket": ticket_id}
        )
    # Out of the partial indexes, each row leaving its entry behind.
    cursor.execute("UPDATE sms_inboundevent SET processed_at = now() WHERE processed_at IS NULL")
    cursor.execute(
        "UPDATE desk_message SET status = 'sent', next_attempt_at = NULL"
        " WHERE next_attempt_at IS NOT NULL"
    )


def add_live(cursor: CursorWrapper, ticket_id: int) -> None:
    """LIVE texts waiting and LIVE messages due, after every dead entry."""
    cursor.execute(
        """INSERT INTO sms_inboundevent
             (provider, key, sender, recipient, text, raw, received_at, error)
           SELECT 'messagebird', 'live' || g || '-' || txid_current(), '+3163' || g, '',
                  'waiting', '{}', clock_timestamp(), ''
           FROM generate_series(1, %(live)s) g""",
        {"live": LIVE},
    )
    cursor.execute(
        insert_messages("clock_timestamp()", "generate_series(1, %(live)s) g"),
        {"live": LIVE, "ticket": ticket_id},
    )


def timed(call: Callable[[], object], samples: int) -> tuple[float, float]:
    """Milliseconds of the first call, and the median of `samples` more."""
    times = []
    for _ in range(samples + 1):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times[0], statistics.median(times[1:])


if __name__ == "__main__":
    main()
