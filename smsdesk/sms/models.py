"""The inbound journal: every accepted webhook, stored before we answer it."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connections, models, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from .journal import Journal, journal_execute
from .providers import InboundSms

# More journal rows than this go to PostgreSQL as one JSON document
# (InboundEvent.insert_statement): psycopg caches how it reads a statement
# of up to 50 parameters, and a row has ten.
JSON_ABOVE = 5

# Set when there is new work; the worker waits on it when idle so an inbound
# text is threaded at once instead of at the next poll.
work_available = threading.Event()


def wake_worker() -> None:
    work_available.set()


class InboundEvent(models.Model):
    provider = models.CharField(max_length=32)
    key = models.CharField(max_length=200, help_text="Provider message id or payload hash.")
    sender = models.CharField(max_length=32)
    recipient = models.CharField(max_length=32, blank=True)
    text = models.TextField()
    sent_at = models.DateTimeField(
        null=True, blank=True, help_text="When the provider says it was sent."
    )
    raw = models.JSONField(help_text="The request as it arrived, for audit and re-processing.")
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        constraints = [
            # A provider delivering the same message again is a no-op.
            models.UniqueConstraint(fields=["provider", "key"], name="inbound_event_once"),
        ]
        indexes = [
            models.Index(
                fields=["received_at", "id"],
                condition=models.Q(processed_at__isnull=True, error=""),
                name="inbound_event_pending",
            ),
            # The outbox holds a claimed text while its number has texts
            # waiting here (one may be a STOP): a probe per claimed row,
            # which without this would scan the whole backlog.
            models.Index(
                fields=["sender"],
                condition=models.Q(processed_at__isnull=True, error=""),
                name="inbound_event_pending_sender",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.key} from {self.sender}"

    # The columns record() fills, in the order of its values (a test checks
    # that they are every column but the id).
    INSERT_FIELDS = (
        "provider",
        "key",
        "sender",
        "recipient",
        "text",
        "sent_at",
        "raw",
        "received_at",
        "processed_at",
        "error",
    )

    @classmethod
    def record(cls, provider: str, sms: InboundSms, raw: dict[str, object]) -> None:
        """Store an accepted webhook; a duplicate delivery changes nothing.

        One statement, INSERT … ON CONFLICT (provider, key) DO NOTHING, in
        autocommit: a statement is its own durable transaction, so BEGIN and
        COMMIT would be two more round trips for nothing. Its SQLite form is
        not INSERT OR IGNORE, which would also swallow other constraint errors.

        Written without the ORM, whose model instance, per-field conversions
        and cursor wrapper cost more CPU than the insert itself: strings go as
        they are (what CharField and TextField would make of a str), times and
        the JSON as insert_statement makes them, and the statement through
        the driver's cursor (see journal_execute). Tests check that the row is
        the one the ORM would store.

        Outside a transaction the row goes into the same statement as those
        that other webhooks of this process store at that moment, on the
        journal's own connection (smsdesk.sms.journal); this returns once
        that statement is done.
        """
        connection = connections[router.db_for_write(cls)]
        values = (
            provider,
            sms.key,
            sms.sender,
            sms.recipient,
            sms.text,
            sms.sent_at,
            raw,
            timezone.now(),
            None,
            "",
        )
        if connection.in_atomic_block:
            journal_execute(connection, *cls.insert_statement(connection, [values]))
            connection.on_commit(wake_worker)  # after the caller's commit
            return
        journal.store(connection.alias, values)  # with any rows other webhooks store now
        wake_worker()

    @classmethod
    @functools.cache
    def raw_field(cls) -> models.JSONField:
        field: models.JSONField = cls._meta.get_field("raw")  # type: ignore[assignment]
        return field

    @classmethod
    def insert_statement(
        cls, connection: BaseDatabaseWrapper, rows: Sequence[Sequence[Any]]
    ) -> tuple[str, list[Any]]:
        """The SQL and parameters that insert these rows (values in INSERT_FIELDS order).

        A VALUES list of the values as the backend's adapters make them. On
        PostgreSQL more rows than JSON_ABOVE go as one JSON document instead,
        read with the table's row type: psycopg looks through a statement's
        text for its placeholders on every call once it has more than 50 of
        them (it caches only shorter ones), 1.4 ms for 64 rows of ten on a
        slow core, more than adapting all their values. One parameter keeps
        the text the same, so that is done once. Up to JSON_ABOVE rows the
        look is cached, and VALUES costs PostgreSQL less (a row alone some
        25 µs, about a tenth, less than through JSON).
        """
        if connection.vendor == "postgresql" and len(rows) > JSON_ABOVE:
            return cls.insert_json_sql(), [cls.json_rows(rows)]
        adapt_time = connection.ops.adapt_datetimefield_value
        raw = cls.raw_field()
        params: list[Any] = []
        for provider, key, sender, recipient, text, sent_at, data, received_at, *rest in rows:
            params += [provider, key, sender, recipient, text, adapt_time(sent_at)]
            params += [raw.get_db_prep_save(data, connection), adapt_time(received_at), *rest]
        return cls.insert_sql(connection.vendor, len(rows)), params

    @classmethod
    def json_rows(cls, rows: Sequence[Sequence[Any]]) -> str:
        """The rows as json_populate_recordset reads them; times as ISO 8601, raw as JSON."""
        names = cls.insert_columns()
        objects = []
        for row in rows:
            values = [v.isoformat() if isinstance(v, datetime) else v for v in row]
            objects.append(dict(zip(names, values, strict=True)))
        return json.dumps(objects, cls=cls.raw_field().encoder, ensure_ascii=False)

    @classmethod
    @functools.cache
    def insert_columns(cls) -> tuple[str, ...]:
        fields = {field.name: field for field in cls._meta.concrete_fields}
        return tuple(str(fields[name].column) for name in cls.INSERT_FIELDS)

    @classmethod
    @functools.cache
    def insert_sql(cls, vendor: str, rows: int = 1) -> str:
        placeholders = "(" + ", ".join(["%s"] * len(cls.INSERT_FIELDS)) + ")"
        return cls.insert_from(f"VALUES {', '.join([placeholders] * rows)}")

    @classmethod
    @functools.cache
    def insert_json_sql(cls) -> str:
        """PostgreSQL's INSERT of the rows of one JSON document (json_rows)."""
        return cls.insert_from("SELECT {columns} FROM json_populate_recordset(NULL::{table}, %s)")

    @classmethod
    def insert_from(cls, rows_sql: str) -> str:
        """INSERT … ON CONFLICT DO NOTHING of the rows that `rows_sql` gives.

        `rows_sql` may name the quoted {columns} and {table}.
        """
        quote = connections[router.db_for_write(cls)].ops.quote_name
        columns = ", ".join(quote(column) for column in cls.insert_columns())
        table = quote(cls._meta.db_table)
        return (
            f"INSERT INTO {table} ({columns}) {rows_sql.format(columns=columns, table=table)}"
            f" ON CONFLICT ({quote('provider')}, {quote('key')}) DO NOTHING"
        )

    @classmethod
    def pending(cls, since: datetime | None = None) -> models.QuerySet[InboundEvent]:
        """Texts waiting to be threaded, oldest first; `since`: received no earlier (Floors)."""
        waiting = cls.objects.filter(processed_at__isnull=True, error="")
        if since is not None:
            waiting = waiting.filter(received_at__gte=since)
        return waiting.order_by("received_at", "id")

    @classmethod
    def newest_id(cls) -> int:
        newest = cls.objects.order_by("-id").values_list("id", flat=True).first()
        return newest or 0

    def retry(self) -> None:
        """Clear a processing error so the worker takes the event again."""
        self.error = ""
        self.save(update_fields=["error"])
        transaction.on_commit(wake_worker)


journal = Journal(InboundEvent.insert_statement)
