"""The inbound journal: every accepted webhook, stored before we answer it."""

from __future__ import annotations

import functools
import threading

from django.db import connections, models, router, transaction
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
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.key} from {self.sender}"

    @classmethod
    def record(cls, provider: str, sms: InboundSms, raw: dict[str, object]) -> None:
        """Store an accepted webhook; a duplicate delivery changes nothing.

        One statement, INSERT … ON CONFLICT (provider, key) DO NOTHING, in
        autocommit: a statement is its own durable transaction, so BEGIN and
        COMMIT would be two more round trips for nothing. Written as SQL as
        the ORM's bulk_create costs more CPU than the insert itself, and its
        SQLite form (INSERT OR IGNORE) would also swallow other constraint
        errors. Values still go through each field's own database conversion.
        """
        event = InboundEvent(
            provider=provider,
            key=sms.key,
            sender=sms.sender,
            recipient=sms.recipient,
            text=sms.text,
            sent_at=sms.sent_at,
            raw=raw,
        )
        connection = connections[router.db_for_write(cls)]
        fields = cls.insert_fields()
        values = [
            field.get_db_prep_save(getattr(event, field.attname), connection) for field in fields
        ]
        with connection.cursor() as cursor:
            cursor.execute(cls.insert_sql(connection.vendor), values)
        # Outside a transaction this runs at once; inside one, after its commit.
        transaction.on_commit(wake_worker)

    @classmethod
    def insert_fields(cls) -> list[models.Field[object, object]]:
        return [field for field in cls._meta.concrete_fields if not field.primary_key]

    @classmethod
    @functools.cache
    def insert_sql(cls, vendor: str) -> str:
        quote = connections[router.db_for_write(cls)].ops.quote_name
        columns = ", ".join(quote(str(field.column)) for field in cls.insert_fields())
        placeholders = ", ".join(["%s"] * len(cls.insert_fields()))
        return (
            f"INSERT INTO {quote(cls._meta.db_table)} ({columns}) VALUES ({placeholders})"
            f" ON CONFLICT ({quote('provider')}, {quote('key')}) DO NOTHING"
        )

    @classmethod
    def pending(cls) -> models.QuerySet[InboundEvent]:
        return cls.objects.filter(processed_at__isnull=True, error="").order_by("received_at", "id")

    def retry(self) -> None:
        """Clear a processing error so the worker takes the event again."""
        self.error = ""
        self.save(update_fields=["error"])
        transaction.on_commit(wake_worker)
