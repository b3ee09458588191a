"""The inbound journal: every accepted webhook, stored before we answer it."""

from __future__ import annotations

import threading

from django.db import models, transaction
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
        """Store an accepted webhook; a duplicate delivery changes nothing."""
        event = InboundEvent(
            provider=provider,
            key=sms.key,
            sender=sms.sender,
            recipient=sms.recipient,
            text=sms.text,
            sent_at=sms.sent_at,
            raw=raw,
        )
        with transaction.atomic():
            # One INSERT … ON CONFLICT DO NOTHING: no exception, no savepoint.
            InboundEvent.objects.bulk_create([event], ignore_conflicts=True)
            transaction.on_commit(wake_worker)

    @classmethod
    def pending(cls) -> models.QuerySet[InboundEvent]:
        return cls.objects.filter(processed_at__isnull=True, error="").order_by("received_at", "id")

    def retry(self) -> None:
        """Clear a processing error so the worker takes the event again."""
        self.error = ""
        self.save(update_fields=["error"])
        transaction.on_commit(wake_worker)
