"""Fill a desk database with realistic tickets fast, for benchmarks.

    .venv/bin/python bench/seed.py sqlite:////tmp/desk.sqlite3 --tickets 100000 --messages 10
    .venv/bin/python bench/seed.py postgres://postgres@127.0.0.1:5432/smsdesk_bench_x

Runs `smsdesk migrate` first (a no-op on a migrated database), then writes
contacts, tickets and messages straight into the tables: `COPY` on
PostgreSQL, `executemany` in large transactions on SQLite. The ORM would
take an hour for a million rows; this takes two to four minutes, most of
it keeping the search indexes (trigram GIN, FTS5 triggers) up to date.

What it writes, per ticket: one contact (an E.164 number, some with a name),
the customer's first text, the automatic confirmation, then customer texts
and agent replies (sent, delivered, a few failed) and the odd internal note,
spread over the last six months. Contact names and the products customers
write about give the search benchmark words from rare to common (see
PRODUCTS and SURNAMES). About one ticket in five is open, most of
them recent. Every outbound row is finished (no queued or sending row), so a
desk started on the database has nothing to send. One more open ticket,
ref `THREAD`, carries `long_thread` messages for the ticket-page figure.

Rows get ids after the largest already stored, so seeding twice adds more.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import random
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import psycopg

REF_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"  # as smsdesk.desk.models
REF_SPACE = len(REF_ALPHABET) ** 6
# Coprime with 30**6, so n -> n * STRIDE mod 30**6 is a bijection: unique
# refs without a lookup, and consecutive tickets do not get similar refs.
REF_STRIDE = 492_876_847
LONG_THREAD_REF = "THREAD"
SEED_AGENT = "seed-agent"
CHUNK = 5_000  # tickets per batch: bounded memory, large transactions

CONTACT_COLUMNS = ("id", "phone", "name", "opted_out_at", "created")
TICKET_COLUMNS = (
    "id",
    "ref",
    "contact_id",
    "status",
    "assignee_id",
    "created",
    "last_message_at",
    "closed_at",
    "current",
)
MESSAGE_COLUMNS = (
    "id",
    "uuid",
    "ticket_id",
    "direction",
    "body",
    "created",
    "author_id",
    "event_id",
    "provider",
    "provider_message_id",
    "status",
    "attempts",
    "next_attempt_at",
    "last_error",
    "sent_at",
    "encoding",
    "segments",
    "purpose",
)

CUSTOMER_TEXTS = [
    "Hi, my order hasn't arrived yet. Can you check?",
    "Where is my parcel? Tracking says delivered but nothing here",
    "I was charged twice for the same order",
    "Can I change the delivery address for order {n}?",
    "The item is broken, how do I return it?",
    "Thanks!",
    "ok",
    "Still waiting for an answer...",
    "Can someone call me back please",
    "What are your opening hours on Sunday?",
    "I want to cancel my subscription",
    "The code you sent doesn't work",
    "Order {n} is missing one item",
    "Is it possible to pay by invoice?",
    "Perfect, that solved it. Thank you so much for the quick help!",
    "hello?",
    "My account is locked after I reset my password, and the reset link in the email "
    "says it has expired although I clicked it within a minute. Can you unlock it?",
    "Could you send me a copy of the receipt for order {n}",
    "The {product} I ordered arrived damaged, can I get a new one?",
    "Is the {product} back in stock?",
]
AGENT_TEXTS = [
    "Hi! Sorry about that, let me check order {n} for you.",
    "I've sent a replacement today; you should have it within 2 days.",
    "The refund is on its way, it can take 3-5 working days.",
    "Could you send me your order number?",
    "We're open 10:00-16:00 on Sundays.",
    "Done: your subscription ends at the end of this month.",
    "Here is a new code: {n}",
    "Glad it's sorted. Have a nice day!",
    "I've unlocked the account; please try the reset link again.",
]
NOTES = ["Customer called as well, same issue.", "Waiting on the warehouse.", "VIP, be quick."]
# Names and products give the search benchmark words of every frequency.
FIRST_NAMES = [
    "Ana", "Jan", "Priya", "Tom", "Léa", "Kwame", "Sofia", "Lukas", "Amara", "Mateo",
    "Yuki", "Fatima", "Oliver", "Chen", "Ingrid", "Diego", "Aisha", "Noah", "Marta", "Ravi",
]  # fmt: skip
SURNAMES = [
    "Silva", "de Vries", "Natarajan", "Becker", "Martin", "Mensah", "Kowalski", "Okafor",
    "Haddad", "Lindqvist", "Moreau", "Tanaka", "Rossi", "O'Brien", "Novak", "Fernández",
    "Nguyen", "Schmidt", "Abara", "Petrov",
]  # fmt: skip
# Zipf-distributed (s = 2): at 1M messages the first is in ~35,000 texts, the
# fourth and fifth in ~2,000 and ~1,400, the last in a few dozen.
PRODUCTS = [
    "kettle", "blender", "toaster", "headphones", "backpack", "charger", "umbrella",
    "thermos", "lamp", "mattress", "router", "jacket", "sneakers", "stroller", "drone",
    "keyboard", "monitor", "tripod", "speaker", "vacuum", "scooter", "helmet", "tent",
    "grill", "juicer", "kayak", "easel", "ukulele", "telescope", "metronome", "sextant",
    "harmonium", "zither", "theodolite", "astrolabe", "samovar", "gramophone", "hourglass",
]  # fmt: skip
PRODUCT_WEIGHTS = list(itertools.accumulate(rank**-2 for rank in range(1, len(PRODUCTS) + 1)))
CONFIRMATION = "Thanks for contacting customer support! Your ticket ID is {ref}."
FAILURE = "MessageBird refused the message: no (correct) recipients found"


def ref_for(n: int) -> str:
    value = n * REF_STRIDE % REF_SPACE
    chars = []
    for _ in range(6):
        value, digit = divmod(value, len(REF_ALPHABET))
        chars.append(REF_ALPHABET[digit])
    return "".join(chars)


class Rows:
    """Rows for a batch of tickets, as tuples in the column orders above."""

    def __init__(self) -> None:
        self.contacts: list[tuple[Any, ...]] = []
        self.tickets: list[tuple[Any, ...]] = []
        self.messages: list[tuple[Any, ...]] = []


class Generator:
    def __init__(
        self, first_contact: int, first_ticket: int, first_message: int, agent_id: int
    ) -> None:
        self.rng = random.Random(first_ticket)  # reproducible per starting point
        self.now = datetime.now(UTC).replace(tzinfo=None)  # naive UTC, as Django stores it
        self.contact_id = first_contact
        self.ticket_id = first_ticket
        self.message_id = first_message
        self.agent_id = agent_id

    def text(self, choices: Sequence[str]) -> str:
        template = self.rng.choice(choices)
        product = ""
        if "{product}" in template:
            product = self.rng.choices(PRODUCTS, cum_weights=PRODUCT_WEIGHTS)[0]
        return template.format(n=self.rng.randint(100000, 999999), product=product)

    def ticket(
        self, rows: Rows, messages: int, ref: str | None = None, age: timedelta | None = None
    ) -> None:
        rng = self.rng
        contact_id, ticket_id = self.contact_id, self.ticket_id
        self.contact_id += 1
        self.ticket_id += 1
        ref = ref or ref_for(ticket_id)
        if age is None:
            # More recent activity than old: a desk that has been growing.
            age = timedelta(days=180 * rng.random() ** 1.5)
        created = self.now - age
        phone = f"+4474{contact_id % 100_000_000:08d}"
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}" if rng.random() < 0.3 else ""
        rows.contacts.append((contact_id, phone, name, None, created))

        at = created
        for n in range(messages):
            if n:
                # Replies within minutes to a day; never past now.
                at = min(at + timedelta(seconds=rng.expovariate(1 / 3600)), self.now)
            at += timedelta(microseconds=rng.randint(1, 999))
            self.message(rows, ticket_id, n, at, ref)
        recent = (self.now - at) < timedelta(days=7)
        is_open = rng.random() < (0.7 if recent else 0.15) or ref == LONG_THREAD_REF
        closed_at = None if is_open else min(at + timedelta(hours=rng.random() * 48), self.now)
        assignee = self.agent_id if rng.random() < 0.5 else None
        rows.tickets.append(
            (
                ticket_id,
                ref,
                contact_id,
                "open" if is_open else "closed",
                assignee,
                created,
                at,
                closed_at,
                True,  # each contact has this one ticket: it takes their texts
            )
        )

    def message(self, rows: Rows, ticket_id: int, n: int, at: datetime, ref: str) -> None:
        rng = self.rng
        message_id = self.message_id
        self.message_id += 1
        author: int | None = None
        status = last_error = provider_id = ""
        sent_at = None
        if n == 0 or (n > 1 and rng.random() < 0.5):
            direction, body = "in", self.text(CUSTOMER_TEXTS)
            provider_id = uuid.UUID(int=rng.getrandbits(128)).hex
        elif n > 1 and rng.random() < 0.06:
            direction, body, author = "note", self.text(NOTES), self.agent_id
        else:
            direction, sent_at, provider_id = "out", at, uuid.UUID(int=rng.getrandbits(128)).hex
            if n == 1:
                body = CONFIRMATION.format(ref=ref)  # automatic: no author
            else:
                body, author = self.text(AGENT_TEXTS), self.agent_id
            roll = rng.random()
            status = "delivered" if roll < 0.85 else "sent" if roll < 0.96 else "failed"
            if status == "failed":
                last_error, sent_at, provider_id = FAILURE, None, ""
        rows.messages.append(
            (
                message_id,
                uuid.UUID(int=rng.getrandbits(128), version=4).hex,
                ticket_id,
                direction,
                body,
                at,
                author,
                None,
                "messagebird" if provider_id else "",
                provider_id,
                status,
                1 if direction == "out" else 0,
                None,
                last_error,
                sent_at,
                # The seeded replies are short and plain: one GSM-7 part each.
                "gsm7" if direction == "out" else "",
                1 if direction == "out" else None,
                "confirmation" if direction == "out" and n == 1 else "",
            )
        )


def batches(gen: Generator, tickets: int, per_ticket: int, long_thread: int) -> Iterator[Rows]:
    rows = Rows()
    if long_thread:
        gen.ticket(rows, long_thread, ref=LONG_THREAD_REF, age=timedelta(days=3))
    for n in range(tickets):
        gen.ticket(rows, per_ticket)
        if n % CHUNK == CHUNK - 1:
            yield rows
            rows = Rows()
    if rows.tickets:
        yield rows


def migrate(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "SMSDESK_LOG_LEVEL": "WARNING"}
    # The command, not `python -m smsdesk`: -m would put the working folder
    # first on the path, ahead of a tree under comparison in PYTHONPATH.
    subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "smsdesk"), "migrate", "--noinput", "-v0"],
        env=env,
        check=True,
        stderr=subprocess.DEVNULL,  # the demo-mode system-check warning
    )


def seed(
    database_url: str, tickets: int, messages_per_ticket: int, *, long_thread: int = 200
) -> None:
    """Add `tickets` tickets of `messages_per_ticket` messages each (and the long thread)."""
    migrate(database_url)
    if database_url.startswith("sqlite"):
        seed_sqlite(urlsplit(database_url).path[1:], tickets, messages_per_ticket, long_thread)
    else:
        seed_postgres(database_url, tickets, messages_per_ticket, long_thread)


def insert_sql(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def sqlite_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # Django stores datetimes on SQLite as naive UTC text, str(datetime).
    return tuple(str(v) if isinstance(v, datetime) else v for v in row)


def seed_sqlite(path: str, tickets: int, per_ticket: int, long_thread: int) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA cache_size=-200000")  # 200 MB: the index pages stay in memory
        db.execute("BEGIN IMMEDIATE")
        agent = seed_agent_sqlite(db)
        if (
            long_thread
            and db.execute("SELECT 1 FROM desk_ticket WHERE ref = ?", [LONG_THREAD_REF]).fetchone()
        ):
            long_thread = 0
        gen = Generator(*(next_id_sqlite(db, t) for t in TABLES), agent_id=agent)
        db.execute("COMMIT")
        for rows in batches(gen, tickets, per_ticket, long_thread):
            db.execute("BEGIN IMMEDIATE")
            for table, columns, values in tables(rows):
                db.executemany(insert_sql(table, columns), map(sqlite_row, values))
            db.execute("COMMIT")
    finally:
        db.close()


TABLES = ("desk_contact", "desk_ticket", "desk_message")


def tables(rows: Rows) -> list[tuple[str, Sequence[str], list[tuple[Any, ...]]]]:
    written = [
        ("desk_contact", CONTACT_COLUMNS, rows.contacts),
        ("desk_ticket", TICKET_COLUMNS, rows.tickets),
        ("desk_message", MESSAGE_COLUMNS, rows.messages),
    ]
    full = []
    for table, columns, values in written:
        extra, defaults = model_defaults(table, columns)
        full.append((table, (*columns, *extra), [row + defaults for row in values]))
    return full


@functools.cache
def model_defaults(table: str, columns: Sequence[str]) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """The columns of `table` this file does not write, with their model defaults.

    The schema grows (a NOT NULL column with a Python-side default would
    otherwise fail every INSERT here); the rows a desk writes get these
    defaults too.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smsdesk.settings")
    import django
    from django.apps import apps

    django.setup()
    model = next(m for m in apps.get_models() if m._meta.db_table == table)
    fields = [f for f in model._meta.concrete_fields if f.column not in columns]
    return tuple(f.column for f in fields), tuple(f.get_default() for f in fields)


def next_id_sqlite(db: sqlite3.Connection, table: str) -> int:
    return int(db.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0])


def seed_agent_sqlite(db: sqlite3.Connection) -> int:
    found = db.execute("SELECT id FROM auth_user WHERE username = ?", [SEED_AGENT]).fetchone()
    if found:
        return int(found[0])
    db.execute(
        "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,"
        " is_staff, is_active, date_joined) VALUES ('!', 0, ?, '', '', '', 1, 1, ?)",
        [SEED_AGENT, str(datetime.now(UTC).replace(tzinfo=None))],
    )
    return int(db.execute("SELECT last_insert_rowid()").fetchone()[0])


def seed_postgres(url: str, tickets: int, per_ticket: int, long_thread: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")  # the naive datetimes are UTC
        with conn.transaction():
            agent = seed_agent_postgres(conn)
            if conn.execute(
                "SELECT 1 FROM desk_ticket WHERE ref = %s", [LONG_THREAD_REF]
            ).fetchone():
                long_thread = 0
            firsts = [
                conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0]  # type: ignore[index]
                for table in TABLES
            ]
        gen = Generator(*firsts, agent_id=agent)
        for rows in batches(gen, tickets, per_ticket, long_thread):
            with conn.transaction(), conn.cursor() as cur:
                for table, columns, values in tables(rows):
                    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                        for row in values:
                            copy.write_row(row)
        for table in TABLES:
            # The ids were given explicitly: move the identity sequences past them.
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
            )
        # A live desk's autovacuum would have done this by now: planner
        # statistics, and a visibility map that allows index-only scans.
        conn.execute("VACUUM ANALYZE desk_contact, desk_ticket, desk_message")


def seed_agent_postgres(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,"
        " is_staff, is_active, date_joined) VALUES ('!', false, %s, '', '', '', true, true, now())"
        " ON CONFLICT (username) DO UPDATE SET is_active = true RETURNING id",
        [SEED_AGENT],
    ).fetchone()
    assert row is not None
    return int(row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url", help="sqlite:////path or postgres://…/name (must exist)")
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=10, help="messages per ticket")
    parser.add_argument("--long-thread", type=int, default=200, help="messages in ticket THREAD")
    args = parser.parse_args()
    started = time.monotonic()
    seed(args.database_url, args.tickets, args.messages, long_thread=args.long_thread)
    total = args.tickets * args.messages + args.long_thread
    print(f"seeded {args.tickets} tickets, {total} messages in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
