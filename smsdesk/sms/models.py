"""The inbound journal: every accepted webhook, stored before we answer it."""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from django.db import connections, models, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from .providers import InboundSms

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
        the JSON through the backend's own adapters, and the statement through
        the driver's cursor (see journal_execute). Tests check that the row is
        the one the ORM would store.
        """
        connection = connections[router.db_for_write(cls)]
        adapt_time = connection.ops.adapt_datetimefield_value
        values = (
            provider,
            sms.key,
            sms.sender,
            sms.recipient,
            sms.text,
            adapt_time(sms.sent_at),
            cls.raw_field().get_db_prep_save(raw, connection),
            adapt_time(timezone.now()),
            None,
            "",
        )
        journal_execute(connection, cls.insert_sql(connection.vendor), values)
        # Outside a transaction this runs at once; inside one, after its commit.
        connection.on_commit(wake_worker)

    @classmethod
    @functools.cache
    def raw_field(cls) -> models.Field[object, object]:
        field: models.Field[object, object] = cls._meta.get_field("raw")  # type: ignore[assignment]
        return field

    @classmethod
    @functools.cache
    def insert_sql(cls, vendor: str) -> str:
        quote = connections[router.db_for_write(cls)].ops.quote_name
        fields = {field.name: field for field in cls._meta.concrete_fields}
        columns = ", ".join(quote(str(fields[name].column)) for name in cls.INSERT_FIELDS)
        placeholders = ", ".join(["%s"] * len(cls.INSERT_FIELDS))
        return (
            f"INSERT INTO {quote(cls._meta.db_table)} ({columns}) VALUES ({placeholders})"
            f" ON CONFLICT ({quote('provider')}, {quote('key')}) DO NOTHING"
        )

    @classmethod
    def pending(cls) -> models.QuerySet[InboundEvent]:
        return cls.objects.filter(processed_at__isnull=True, error="").order_by("received_at", "id")

    @classmethod
    def newest_id(cls) -> int:
        newest = cls.objects.order_by("-id").values_list("id", flat=True).first()
        return newest or 0

    def retry(self) -> None:
        """Clear a processing error so the worker takes the event again."""
        self.error = ""
        self.save(update_fields=["error"])
        transaction.on_commit(wake_worker)


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
