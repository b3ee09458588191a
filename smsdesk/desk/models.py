"""Contacts, tickets and their messages. Outbound message rows are the outbox."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, models, transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from smsdesk.lib.phone import is_phone_number
from smsdesk.sms.models import InboundEvent, wake_worker

# No 0/O, 1/I/L or U: refs are read aloud and typed from a phone screen.
REF_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
REF_LENGTH = 6


def new_ref() -> str:
    return "".join(secrets.choice(REF_ALPHABET) for _ in range(REF_LENGTH))


class ReplyRefused(Exception):
    """An agent action the desk will not carry out; the message says why."""


class Contact(models.Model):
    phone = models.CharField(
        max_length=32, unique=True, help_text="E.164, or an alphanumeric sender id."
    )
    name = models.CharField(max_length=100, blank=True)
    opted_out_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name or self.phone

    @property
    def can_receive_sms(self) -> bool:
        return is_phone_number(self.phone)

    @classmethod
    def for_phone(cls, phone: str) -> Contact:
        # get_or_create re-reads after an IntegrityError, so two workers
        # meeting a new number at once end up with the same contact.
        contact, _ = cls.objects.get_or_create(phone=phone)
        return contact


class Ticket(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        CLOSED = "closed"

    ref = models.CharField(max_length=12, unique=True)
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="tickets")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now)
    last_message_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["contact"], condition=Q(status="open"), name="one_open_ticket_per_contact"
            ),
        ]
        indexes = [models.Index(fields=["status", "-last_message_at", "-id"], name="ticket_inbox")]

    def __str__(self) -> str:
        return self.ref

    @classmethod
    def open_for(cls, contact: Contact, at: datetime) -> tuple[Ticket, bool]:
        """The contact's open ticket, opened now if there is none. True if new.

        The partial unique index decides races: a second opener fails its
        INSERT, rolls back to the savepoint and joins the winner's ticket.
        """
        for _ in range(5):
            ticket = cls.objects.filter(contact=contact, status=cls.Status.OPEN).first()
            if ticket is not None:
                return ticket, False
            try:
                with transaction.atomic():
                    return cls.objects.create(
                        ref=new_ref(), contact=contact, created=at, last_message_at=at
                    ), True
            except IntegrityError:
                continue  # another worker opened it, or (rarely) the ref was taken
        raise RuntimeError(f"could not open a ticket for contact {contact.pk}")

    def touch(self, at: datetime) -> None:
        # Greatest, not assignment: threads may record messages out of order.
        Ticket.objects.filter(pk=self.pk).update(last_message_at=Greatest(F("last_message_at"), at))

    @transaction.atomic
    def reply(self, body: str, author: AbstractBaseUser | None) -> Message:
        """Queue an SMS to the customer; the worker sends it after commit."""
        body = body.strip()
        if not body:
            raise ReplyRefused("The reply is empty.")
        if not self.contact.can_receive_sms:
            raise ReplyRefused(
                f"{self.contact.phone} is a sender name, not a number: it cannot receive SMS."
            )
        message = Message.queue(self, body, author=author)
        self.touch(message.created)
        return message

    @transaction.atomic
    def close(self) -> None:
        self.status = self.Status.CLOSED
        self.closed_at = timezone.now()
        self.save(update_fields=["status", "closed_at"])

    def reopen(self) -> None:
        """Reopen, unless the customer has texted since and has a new open ticket."""
        try:
            with transaction.atomic():
                self.status = self.Status.OPEN
                self.closed_at = None
                self.save(update_fields=["status", "closed_at"])
        except IntegrityError:
            self.status = self.Status.CLOSED
            raise ReplyRefused("This customer already has another open ticket.") from None


def confirmation_text(ref: str) -> str:
    return settings.SMSDESK_CONFIRMATION_TEXT.replace("{ref}", ref)


@transaction.atomic
def receive(event: InboundEvent) -> Message:
    """Thread one journal event into its contact's open ticket.

    The first text from a number opens a ticket and queues the confirmation;
    later texts join it silently. Called by the worker, once per event.
    """
    contact = Contact.for_phone(event.sender)
    ticket, opened = Ticket.open_for(contact, event.received_at)
    message = Message.objects.create(
        ticket=ticket,
        direction=Message.Direction.IN,
        body=event.text,
        created=event.received_at,
        event=event,
        provider=event.provider,
        provider_message_id=event.key,
    )
    ticket.touch(event.received_at)
    if opened and contact.can_receive_sms:
        Message.queue(ticket, confirmation_text(ticket.ref))
    InboundEvent.objects.filter(pk=event.pk).update(processed_at=timezone.now())
    return message


class Message(models.Model):
    class Direction(models.TextChoices):
        IN = "in", "from customer"
        OUT = "out", "to customer"
        NOTE = "note", "internal note"

    class Status(models.TextChoices):
        QUEUED = "queued"
        SENDING = "sending"
        SENT = "sent"
        DELIVERED = "delivered"
        FAILED = "failed"
        EXPIRED = "expired"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=4, choices=Direction.choices)
    body = models.TextField()
    created = models.DateTimeField(default=timezone.now)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    event = models.OneToOneField(
        InboundEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    provider = models.CharField(max_length=32, blank=True)
    provider_message_id = models.CharField(max_length=200, blank=True)
    # Outbox columns, used by outbound messages only.
    status = models.CharField(max_length=10, choices=Status.choices, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created", "id"]
        indexes = [
            models.Index(fields=["ticket", "created", "id"], name="message_thread"),
            models.Index(
                fields=["next_attempt_at"],
                # Exactly the queued and sending rows (sent and failed clear
                # the field); a status IN (...) condition SQLite would not use.
                condition=Q(next_attempt_at__isnull=False),
                name="message_outbox_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.body[:30]}"

    @classmethod
    def queue(cls, ticket: Ticket, body: str, author: AbstractBaseUser | None = None) -> Message:
        now = timezone.now()
        message = cls.objects.create(
            ticket=ticket,
            direction=cls.Direction.OUT,
            body=body,
            author=author,
            created=now,
            status=cls.Status.QUEUED,
            next_attempt_at=now,
        )
        transaction.on_commit(wake_worker)
        return message

    @property
    def pending(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.SENDING)

    # The outbox, driven by the worker.

    LEASE = timedelta(seconds=60)  # a worker that dies mid-send frees its rows after this

    @classmethod
    def claim_due(cls, limit: int) -> list[Message]:
        """Take due outbound messages for this worker alone.

        On PostgreSQL SKIP LOCKED lets several workers claim side by side;
        SQLite's IMMEDIATE transactions hold the write lock from BEGIN, which
        serialises claims the same way. A claim is a lease: a row still in
        "sending" when it ends is due again (the worker died mid-send).
        """
        now = timezone.now()
        with transaction.atomic():
            due = (
                cls.objects.select_for_update(skip_locked=True)
                .filter(
                    status__in=[cls.Status.QUEUED, cls.Status.SENDING], next_attempt_at__lte=now
                )
                .order_by("next_attempt_at", "id")
                .values_list("id", flat=True)[:limit]
            )
            ids = list(due)
            cls.objects.filter(id__in=ids).update(
                status=cls.Status.SENDING,
                attempts=F("attempts") + 1,
                next_attempt_at=now + cls.LEASE,
            )
        return list(cls.objects.filter(id__in=ids).select_related("ticket__contact").order_by("id"))

    def _this_claim(self) -> models.QuerySet[Message]:
        # A worker whose lease ran out while it waited on the provider must
        # not overwrite the outcome recorded by the worker that re-claimed it.
        return Message.objects.filter(
            pk=self.pk, status=self.Status.SENDING, attempts=self.attempts
        )

    def mark_sent(self, provider: str, provider_message_id: str) -> None:
        self._this_claim().update(
            status=self.Status.SENT,
            provider=provider,
            provider_message_id=provider_message_id,
            sent_at=timezone.now(),
            next_attempt_at=None,
            last_error="",
        )

    def mark_failed(self, error: str) -> None:
        self._this_claim().update(status=self.Status.FAILED, next_attempt_at=None, last_error=error)

    def retry_later(self, error: str, delay: timedelta) -> None:
        self._this_claim().update(
            status=self.Status.QUEUED, next_attempt_at=timezone.now() + delay, last_error=error
        )
