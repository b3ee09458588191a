"""Contacts, tickets and their messages. Outbound message rows are the outbox."""

from __future__ import annotations

import functools
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Case, F, OuterRef, Q, Subquery, Value, When
from django.db.models.expressions import RawSQL
from django.db.models.functions import Greatest
from django.db.models.lookups import IsNull
from django.utils import timezone

from smsdesk.lib.phone import is_phone_number
from smsdesk.lib.segments import measure
from smsdesk.live.events import publish
from smsdesk.sms.models import InboundEvent, wake_worker
from smsdesk.sms.providers.base import DeliveryReceipt

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
    # The text that opted them out: the evidence, should anyone ask.
    opt_out_message = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name or self.phone

    @property
    def can_receive_sms(self) -> bool:
        return is_phone_number(self.phone)

    @transaction.atomic
    def rename(self, name: str) -> None:
        """Agents name a contact; the name then stands in for the number everywhere."""
        self.name = name.strip()
        self.save(update_fields=["name"])
        publish(self.tickets.values_list("pk", flat=True), "contact")

    @classmethod
    def for_phone(cls, phone: str) -> Contact:
        return cls.for_phones([phone])[phone]

    @classmethod
    def for_phones(cls, phones: Iterable[str]) -> dict[str, Contact]:
        """The contact for each number, created for the new ones: one query, or three.

        New numbers go in with ON CONFLICT DO NOTHING, sorted: a worker that
        meets a number another worker is inserting waits for that commit and
        reads the winner's row. Sorted, because two workers then take the
        unique-index entries in one order and neither can hold an entry the
        other waits for while waiting itself (no deadlock).
        """
        wanted = sorted(set(phones))
        found: dict[str, Contact] = Contact.objects.in_bulk(wanted, field_name="phone")
        missing = [phone for phone in wanted if phone not in found]
        if missing:
            new = [Contact(phone=phone) for phone in missing]
            Contact.objects.bulk_create(new, ignore_conflicts=True)
            found.update(Contact.objects.in_bulk(missing, field_name="phone"))
        return found


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
    # The ticket the contact's texts go to unless they quote another's ref:
    # their newest, or the one an agent reopened or merged into.
    current = models.BooleanField(default=True)
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            # Decides races between workers opening a ticket for one number.
            models.UniqueConstraint(
                fields=["contact"], condition=Q(current=True), name="one_current_ticket_per_contact"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "-last_message_at", "-id"], name="ticket_inbox"),
            # The "all" view: without it both databases sort every ticket
            # (and SQLite computes each row's last-message preview first).
            models.Index(fields=["-last_message_at", "-id"], name="ticket_recent"),
            # The inbox's per-owner counts of open tickets, read from the index
            # alone (SQLite at 20k open tickets: 50 ms without it, 5 ms with).
            models.Index(fields=["status", "assignee"], name="ticket_owner"),
        ]

    def __str__(self) -> str:
        return self.ref

    @classmethod
    def open_for(cls, contact: Contact, at: datetime) -> tuple[Ticket, bool]:
        """The ticket a text from the contact at `at` goes to. True if opened for it."""
        return cls.open_for_all({contact: (at, at)})[contact.pk]

    @classmethod
    def open_for_all(
        cls, texts: Mapping[Contact, tuple[datetime, datetime]]
    ) -> dict[int, tuple[Ticket, bool]]:
        """Each contact's ticket for new texts, keyed by contact id; True if opened by this call.

        `texts` gives each contact's first and last new text. The contact's
        current ticket takes them if it is open, or if it was closed less than
        SMSDESK_REOPEN_WINDOW before the first text (it is reopened, and no
        confirmation goes out). Otherwise it stops being current and a new
        ticket opens, starting at the first text. Every change is conditional
        and the partial unique index allows one current ticket per contact, so
        two workers meeting one contact cannot both act: the loser's UPDATE or
        INSERT changes nothing, and the next pass reads the winner's ticket.
        """
        tickets: dict[int, tuple[Ticket, bool]] = {}
        waiting = {contact.pk: contact for contact in texts}
        window = settings.SMSDESK_REOPEN_WINDOW
        for _ in range(5):
            reopen, retire = [], []
            for ticket in Ticket.objects.filter(contact_id__in=waiting, current=True):
                first = texts[waiting[ticket.contact_id]][0]
                if ticket.status == cls.Status.OPEN:
                    ticket.contact = waiting.pop(ticket.contact_id)
                    tickets[ticket.contact_id] = (ticket, False)
                elif ticket.closed_at is not None and first - ticket.closed_at < window:
                    reopen.append(ticket.pk)
                else:
                    retire.append(ticket.pk)
            if reopen:
                Ticket.objects.filter(pk__in=reopen, status=cls.Status.CLOSED).update(
                    status=cls.Status.OPEN, closed_at=None
                )
                publish(reopen, "ticket")
            if retire:
                Ticket.objects.filter(pk__in=retire, current=True).update(current=False)
            if not waiting:
                return tickets
            if reopen:
                continue  # read the reopened tickets back
            new = [(contact, *texts[contact]) for pk, contact in sorted(waiting.items())]
            for ticket in Ticket._insert_new(new):
                del waiting[ticket.contact_id]
                tickets[ticket.contact_id] = (ticket, True)
            if not waiting:
                return tickets
            # Another worker opened or reopened these, or (rarely) a ref was taken.
        raise RuntimeError(f"could not open a ticket for contacts {sorted(waiting)}")

    @classmethod
    def _insert_new(cls, rows: Sequence[tuple[Contact, datetime, datetime]]) -> list[Ticket]:
        """INSERT … ON CONFLICT DO NOTHING RETURNING: the tickets actually inserted.

        SQL, as the ORM's bulk_create returns no ids with ignore_conflicts and
        so cannot tell which rows went in. Rows in contact id order, so that
        two workers take the index entries in the same order. A row went in
        if its contact and ref came back: two rows of one batch may draw the
        same ref, and only the first of them goes in.
        """
        if not rows:
            return []
        new = [
            Ticket(ref=new_ref(), contact=contact, created=first, last_message_at=last)
            for contact, first, last in rows
        ]
        names = ("ref", "contact", "status", "created", "last_message_at", "current")
        fields = [field for field in Ticket._meta.concrete_fields if field.name in names]
        quote = connection.ops.quote_name
        columns = ", ".join(quote(cast(str, field.column)) for field in fields)
        prepared = [
            [field.get_db_prep_save(getattr(ticket, field.attname), connection) for field in fields]
            for ticket in new
        ]
        values, params = insert_values(fields, prepared)
        sql = (
            f"INSERT INTO {quote(Ticket._meta.db_table)} ({columns}) {values}"
            " ON CONFLICT DO NOTHING"
            f" RETURNING {quote('id')}, {quote('contact_id')}, {quote('ref')}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            inserted = {(contact_id, ref): pk for pk, contact_id, ref in cursor.fetchall()}
        opened = [ticket for ticket in new if (ticket.contact_id, ticket.ref) in inserted]
        for ticket in opened:
            ticket.pk = inserted[ticket.contact_id, ticket.ref]
            ticket._state.adding = False
        return opened

    def touch(self, at: datetime) -> None:
        Ticket.touch_all({self.pk: at})

    @classmethod
    def touch_all(cls, latest: Mapping[int, datetime]) -> None:
        """Move each ticket's last_message_at forward to `latest[ticket id]`, in one UPDATE."""
        if not latest:
            return
        ids = sorted(latest)
        if connection.features.has_select_for_update:
            # Locked in id order first: two workers updating the same tickets
            # in whatever order each UPDATE happens to scan could deadlock.
            locked = cls.objects.select_for_update(no_key=True).filter(pk__in=ids).order_by("pk")
            list(locked.values_list("pk", flat=True))
        at = per_row(Ticket, "last_message_at", latest)
        # Greatest, not assignment: threads may record messages out of order.
        cls.objects.filter(pk__in=ids).update(last_message_at=Greatest(F("last_message_at"), at))

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
        if self.contact.opted_out_at:
            raise ReplyRefused(opted_out_reason(self.contact))
        message = Message.queue(self, body, author=author)
        self.touch(message.created)
        publish([self.pk], "message")
        return message

    @transaction.atomic
    def assign(self, agent: AbstractBaseUser | None) -> None:
        """Give the ticket to an agent, or to nobody."""
        self.assignee = agent  # type: ignore[assignment]
        self.save(update_fields=["assignee"])
        publish([self.pk], "assign")

    @transaction.atomic
    def add_note(self, body: str, author: AbstractBaseUser) -> Message:
        """An internal note: agents see it in the thread, the customer never does."""
        body = body.strip()
        if not body:
            raise ReplyRefused("The note is empty.")
        # Notes leave last_message_at alone: the inbox orders by conversation.
        note = Message.objects.create(
            ticket=self, direction=Message.Direction.NOTE, body=body, author_id=author.pk
        )
        publish([self.pk], "note")
        return note

    def written_since(self, message_id: int, agent: AbstractBaseUser) -> list[Message]:
        """Replies by other agents after `message_id`: what a reply would collide with."""
        return list(
            self.messages.filter(pk__gt=message_id, direction=Message.Direction.OUT)
            .exclude(author=None)
            .exclude(author_id=agent.pk)
            .select_related("author")
        )

    @transaction.atomic
    def close(self) -> None:
        self.status = self.Status.CLOSED
        self.closed_at = timezone.now()
        self.save(update_fields=["status", "closed_at"])
        publish([self.pk], "ticket")

    @transaction.atomic
    def split_off(self, message: Message) -> Ticket:
        """Move one message into a new open ticket of the same contact; the new ticket.

        The customer's texts keep going to the current ticket: a split is the
        agents' way to work two problems apart, not a new conversation.
        """
        if message.ticket_id != self.pk:
            raise ReplyRefused("That message is not in this ticket.")
        if self.messages.exclude(pk=message.pk).count() == 0:
            raise ReplyRefused("A ticket with one message cannot be split.")
        for _ in range(5):
            ticket = Ticket(
                ref=new_ref(),
                contact=self.contact,
                current=False,
                created=message.created,
                last_message_at=message.created,
            )
            try:
                with transaction.atomic():
                    ticket.save()
                break
            except IntegrityError:  # the ref was taken; draw another
                continue
        else:
            raise RuntimeError("could not draw a free ticket ref")
        Message.objects.filter(pk=message.pk).update(ticket=ticket)
        latest = (
            self.messages.exclude(direction=Message.Direction.NOTE).order_by("-created").first()
        )
        if latest is not None:
            Ticket.objects.filter(pk=self.pk).update(last_message_at=latest.created)
        publish([self.pk, ticket.pk], "message")
        return ticket

    @transaction.atomic
    def merge_into(self, survivor: Ticket) -> None:
        """Move every message into `survivor`; this ticket closes and points there.

        Both must be the same contact's. The survivor is open if either was,
        and becomes current if this one was, so the customer's next texts
        (and any quote of this ticket's ref) reach it.
        """
        if survivor.pk == self.pk or survivor.contact_id != self.contact_id:
            raise ReplyRefused("Only two different tickets of the same customer can be merged.")
        if survivor.merged_into_id is not None:
            raise ReplyRefused(f"Ticket {survivor.ref} was itself merged away.")
        self.messages.update(ticket=survivor)
        Ticket.objects.filter(merged_into=self).update(merged_into=survivor)
        changes: dict[str, object] = {
            "last_message_at": Greatest(F("last_message_at"), Value(self.last_message_at))
        }
        if self.status == self.Status.OPEN:
            changes.update(status=self.Status.OPEN, closed_at=None)
        was_current = self.current
        self.status, self.closed_at = self.Status.CLOSED, self.closed_at or timezone.now()
        self.current, self.merged_into = False, survivor
        self.save(update_fields=["status", "closed_at", "current", "merged_into"])
        if was_current:
            changes["current"] = True
        Ticket.objects.filter(pk=survivor.pk).update(**changes)
        survivor.refresh_from_db()
        publish([self.pk, survivor.pk], "message")

    @transaction.atomic
    def reopen(self) -> None:
        """Reopen; the customer's texts come here again unless another of theirs is open."""
        self.status = self.Status.OPEN
        self.closed_at = None
        self.save(update_fields=["status", "closed_at"])
        if not self.current:
            current = Ticket.objects.select_for_update().filter(
                contact=self.contact_id, current=True
            )
            if not current.filter(status=self.Status.OPEN).exists():
                current.update(current=False)
                self.current = True
                self.save(update_fields=["current"])
        publish([self.pk], "ticket")


class TicketRead(models.Model):
    """When an agent last opened a ticket: newer activity shows as unread to them."""

    agent = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="reads")
    read_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ticket", "agent"], name="one_read_marker_per_agent")
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} read {self.ticket_id} at {self.read_at}"

    @classmethod
    def mark(cls, ticket: Ticket, agent: AbstractBaseUser) -> None:
        """The agent has seen everything in the ticket up to now (one upsert)."""
        TicketRead.objects.bulk_create(
            [TicketRead(ticket=ticket, agent_id=agent.pk, read_at=timezone.now())],
            update_conflicts=True,
            unique_fields=["ticket", "agent"],
            update_fields=["read_at"],
        )


@transaction.atomic
def start_conversation(
    phone: str, body: str, author: AbstractBaseUser, name: str = ""
) -> tuple[Ticket, bool]:
    """An agent texts a number first: its open ticket, or a new one assigned to them.

    No confirmation goes out: the customer did not ask for anything, and the
    agent's own text is the first they see. True if the ticket is new.
    """
    contact = Contact.for_phone(phone)
    if name.strip() and not contact.name:
        contact.rename(name)
    ticket, opened = Ticket.open_for(contact, timezone.now())
    ticket.contact = contact
    if opened:
        ticket.assign(author)
    ticket.reply(body, author=author)
    return ticket, opened


def opted_out_reason(contact: Contact) -> str:
    when = timezone.localtime(contact.opted_out_at).strftime("%-d %b %Y, %H:%M")
    return f"{contact} texted STOP on {when}: no SMS can be sent to them until they text START."


class Message(models.Model):
    class Direction(models.TextChoices):
        IN = "in", "from customer"
        OUT = "out", "to customer"
        NOTE = "note", "internal note"

    class Status(models.TextChoices):
        QUEUED = "queued"
        SENDING = "sending"
        SENT = "sent"
        BUFFERED = "buffered", "Waiting at the carrier"
        DELIVERED = "delivered"
        FAILED = "failed"
        EXPIRED = "expired"
        CANCELLED = "cancelled"

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
    # From the provider's delivery receipts (outbound only).
    status_at = models.DateTimeField(null=True, blank=True)
    status_reason = models.CharField(max_length=200, blank=True)
    status_error_code = models.CharField(max_length=20, blank=True)
    # Why the desk itself sent it: "confirmation", or the answer to a keyword
    # ("opt-out", "opt-in", "help"); blank for agents' texts and inbound.
    purpose = models.CharField(max_length=12, blank=True)
    # How the text goes over the air (smsdesk.lib.segments), for outbound only.
    encoding = models.CharField(max_length=8, blank=True)
    segments = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["created", "id"]
        indexes = [
            models.Index(fields=["ticket", "created", "id"], name="message_thread"),
            models.Index(
                # In the order claim_due takes them, so that a claim reads only
                # the rows it takes, however many are due (a burst's thousands).
                fields=["next_attempt_at", "id"],
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
        return cls.queue_all([(ticket, body)], author=author)[0]

    @classmethod
    def queue_all(
        cls,
        texts: Sequence[tuple[Ticket, str]],
        author: AbstractBaseUser | None = None,
        purpose: str = "",
    ) -> list[Message]:
        """Put SMS to customers in the outbox (one INSERT); the worker sends them after commit."""
        if not texts:
            return []
        now = timezone.now()
        messages = Message.insert_all(
            Message(
                ticket=ticket,
                direction=cls.Direction.OUT,
                body=body,
                author_id=None if author is None else author.pk,
                created=now,
                status=cls.Status.QUEUED,
                next_attempt_at=now,
                encoding=size.encoding,
                segments=size.segments,
                purpose=purpose,
            )
            for (ticket, body), size in zip(
                texts, map(measure, (body for _, body in texts)), strict=True
            )
        )
        transaction.on_commit(wake_worker)
        return messages

    @classmethod
    def insert_all(cls, messages: Iterable[Message]) -> list[Message]:
        """Store new messages, a statement per INSERT_ROWS, and give them their ids.

        What bulk_create stores, for less CPU. It prepares every value of
        every row through its field, and the worker stores two messages for
        each text from a new number (the text and its confirmation); here
        only the values that need it are prepared (insert_plan). A pass of
        100 events took some 16 % fewer instructions in the worker
        (docs/performance.md). A test checks that the rows are the ones the
        ORM would store.
        """
        messages = list(messages)
        fields, prepared = insert_plan(connection.vendor)
        quote = connection.ops.quote_name
        table = quote(cls._meta.db_table)
        columns = ", ".join(quote(cast(str, field.column)) for field in fields)
        returning = f" RETURNING {quote('id')}, {quote('uuid')}"
        uuids = [field.name for field in fields].index("uuid")
        for start in range(0, len(messages), INSERT_ROWS):
            chunk = messages[start : start + INSERT_ROWS]
            rows = [[prepare(message) for prepare in prepared] for message in chunk]
            values, params = insert_values(fields, rows)
            by_uuid = {row[uuids]: message for row, message in zip(rows, chunk, strict=True)}
            with connection.cursor() as cursor:
                cursor.execute(f"INSERT INTO {table} ({columns}) {values}{returning}", params)
                for pk, stored_uuid in cursor.fetchall():
                    message = by_uuid[stored_uuid]
                    message.pk = pk
                    message._state.adding = False
                    message._state.db = connection.alias
        return messages

    @classmethod
    def apply_receipt(cls, receipt: DeliveryReceipt) -> int:
        """Move an outbound message forward to the receipt's status; how many changed (0 or 1).

        Receipts come late, out of order and more than once: one conditional
        UPDATE applies a receipt only to a message whose status comes before
        it (sent < buffered < delivered; delivered, failed and expired are
        final), so an old or repeated receipt changes nothing. A receipt for
        a message waiting to be retried proves the provider took it: the
        retry is called off instead of texting the customer twice.
        """
        earlier = [
            status
            for status in RECEIPT_ORDER
            if RECEIPT_ORDER[status] < RECEIPT_ORDER[receipt.status]
        ]
        match = (
            Q(provider_message_id=receipt.provider_message_id)
            if receipt.provider_message_id
            else Q()
        )
        try:
            match |= Q(uuid=uuid.UUID(receipt.reference))
        except ValueError:
            pass
        if not match:
            return 0
        found = cls.objects.filter(match, direction=cls.Direction.OUT, status__in=earlier)
        ticket_ids = list(found.values_list("ticket_id", flat=True)[:1])
        changed = found.update(
            status=receipt.status,
            status_at=receipt.at,
            status_reason=receipt.reason[:200],
            status_error_code=receipt.error_code[:20],
            next_attempt_at=None,
        )
        if changed:
            publish(ticket_ids, "delivery")
        return changed

    @classmethod
    def cancel_queued(cls, contact_ids: Sequence[int]) -> None:
        """An opted-out contact's queued texts are never sent."""
        if contact_ids:
            cls.objects.filter(ticket__contact_id__in=contact_ids, status=cls.Status.QUEUED).update(
                status=cls.Status.CANCELLED,
                next_attempt_at=None,
                last_error="The customer texted STOP before it was sent.",
            )

    # Set on claimed messages (claim_due): their number has texts not yet
    # threaded, one of which may be a STOP, so they wait for the threading.
    held = False

    @property
    def blocked(self) -> bool:
        """Opted out since this was queued: only the answer to their STOP may go."""
        return bool(self.ticket.contact.opted_out_at) and self.purpose != "opt-out"

    @property
    def pending(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.SENDING)

    # The outbox, driven by the worker.

    SENDING_FIELDS = (
        "uuid",
        "body",
        "attempts",
        "purpose",
        "ticket__contact__phone",
        "ticket__contact__opted_out_at",
    )
    LEASE = timedelta(seconds=60)  # a worker that dies mid-send frees its rows after this

    @classmethod
    def claim_due(cls, limit: int, since: datetime | None = None) -> list[Message]:
        """Take due outbound messages for this worker alone.

        On PostgreSQL SKIP LOCKED lets several workers claim side by side;
        SQLite's IMMEDIATE transactions hold the write lock from BEGIN, which
        serialises claims the same way. A claim is a lease: a row still in
        "sending" when it ends is due again (the worker died mid-send).
        `since`: only messages due no earlier than that (the worker's Floors).
        """
        now = timezone.now()
        due, claimed = cls._claim_queries()
        if since is not None:
            due = due.filter(next_attempt_at__gte=since)
        with transaction.atomic():
            ids = list(due.filter(next_attempt_at__lte=now)[:limit])
            if not ids:
                return []  # the idle worker's every poll: nothing more to build
            cls.objects.filter(id__in=ids).update(
                status=cls.Status.SENDING,
                attempts=F("attempts") + 1,
                next_attempt_at=now + cls.LEASE,
            )
        return list(claimed.filter(id__in=ids))

    @classmethod
    @functools.cache
    def _claim_queries(cls) -> tuple[models.QuerySet[Message, int], models.QuerySet[Message]]:
        """The claim's two reads, built once and narrowed to each claim's rows.

        A steady flow is claimed a few messages at a time, and there the ORM's
        work per claim counts: building and compiling the second read took
        1.7 CPU-ms on a slow core, 1.0 from a query built once.
        """
        due = (
            cls.objects.select_for_update(skip_locked=True)
            .filter(status__in=[cls.Status.QUEUED, cls.Status.SENDING])
            .order_by("next_attempt_at", "id")
            .values_list("id", flat=True)
        )
        # Read after the claim, in one statement and so from one snapshot: a
        # STOP threaded by another worker meanwhile shows either as the
        # contact's opt-out or as a text still unthreaded in the journal
        # (`held`), never as neither, which two reads could see if its commit
        # landed between them.
        unthreaded = InboundEvent.objects.filter(
            processed_at__isnull=True, error="", sender=OuterRef("ticket__contact__phone")
        )
        # A scalar subquery rather than EXISTS: PostgreSQL may run an EXISTS
        # as one hashed scan of every text waiting, and during a burst it did
        # (13 ms a claim with 23k waiting, against 0.2 ms for a probe per
        # claimed row on inbound_event_pending_sender, which this always is).
        waiting = Subquery(unthreaded.values("id")[:1])
        claimed = cls.objects.annotate(held=IsNull(waiting, False))
        # Only what sending and recording read: whole rows of three tables
        # cost more to convert than the rest of the claim.
        claimed = claimed.select_related("ticket__contact").only(*cls.SENDING_FIELDS)
        return due, claimed.order_by("id")

    def _this_claim(self) -> models.QuerySet[Message]:
        return Message._these_claims([self])

    @staticmethod
    def _these_claims(
        messages: Sequence[Message], also: Iterable[str] = ()
    ) -> models.QuerySet[Message]:
        # A worker whose lease ran out while it waited on the provider must
        # not overwrite the outcome recorded by the worker that re-claimed it:
        # each row must still be in "sending" on the attempt this worker made.
        attempts: dict[int, list[int]] = {}
        for message in messages:
            attempts.setdefault(message.attempts, []).append(message.pk)
        claims = Q()
        for attempt, ids in attempts.items():
            claims |= Q(pk__in=ids, attempts=attempt)
        return Message.objects.filter(claims, status__in=[Message.Status.SENDING, *also])

    def mark_sent(self, provider: str, provider_message_id: str) -> None:
        Message.mark_all_sent(provider, [(self, provider_message_id)])

    def mark_failed(self, error: str) -> None:
        Message.mark_all_failed([(self, error)])

    def retry_later(self, error: str, delay: timedelta) -> None:
        Message.retry_all_later([(self, error, delay)])

    # The same, for a batch of sends: one UPDATE each, whatever the batch size.

    @classmethod
    def mark_all_sent(cls, provider: str, sent: Sequence[tuple[Message, str]]) -> None:
        if sent:
            # A delivery receipt can beat the provider's answer here; its
            # status stands, the provider's id and the time are still recorded.
            cls._these_claims([message for message, _ in sent], also=RECEIPT_STATUSES).update(
                status=Case(
                    When(status=cls.Status.SENDING, then=Value(cls.Status.SENT)),
                    default=F("status"),
                ),
                provider=provider,
                provider_message_id=per_row(
                    Message, "provider_message_id", {m.pk: pid for m, pid in sent}
                ),
                sent_at=timezone.now(),
                next_attempt_at=None,
                last_error="",
            )
            publish(sorted({message.ticket_id for message, _ in sent}), "delivery")

    @classmethod
    def mark_all_failed(cls, failed: Sequence[tuple[Message, str]]) -> None:
        if failed:
            cls._these_claims([message for message, _ in failed]).update(
                status=cls.Status.FAILED,
                next_attempt_at=None,
                last_error=per_row(Message, "last_error", {m.pk: error for m, error in failed}),
            )
            publish(sorted({message.ticket_id for message, _ in failed}), "delivery")

    @classmethod
    def cancel_claimed(cls, blocked: Sequence[Message]) -> None:
        """Claimed, but the customer opted out since: cancelled, never sent."""
        if blocked:
            cls._these_claims(blocked).update(
                status=cls.Status.CANCELLED,
                next_attempt_at=None,
                last_error="The customer texted STOP before it was sent.",
            )
            publish(sorted({message.ticket_id for message in blocked}), "delivery")

    @classmethod
    def defer_claimed(cls, waiting: Sequence[Message]) -> None:
        """Give claims back untried: due again at once, the attempt not counted."""
        if waiting:
            cls._these_claims(waiting).update(
                status=cls.Status.QUEUED, next_attempt_at=timezone.now(), attempts=F("attempts") - 1
            )

    @classmethod
    def retry_all_later(cls, retries: Sequence[tuple[Message, str, timedelta]]) -> None:
        if retries:
            now = timezone.now()
            cls._these_claims([message for message, _, _ in retries]).update(
                status=cls.Status.QUEUED,
                next_attempt_at=per_row(
                    Message, "next_attempt_at", {m.pk: now + delay for m, _, delay in retries}
                ),
                last_error=per_row(Message, "last_error", {m.pk: error for m, error, _ in retries}),
            )
            publish(sorted({message.ticket_id for message, _, _ in retries}), "delivery")


# Where each status stands for delivery receipts: a receipt moves a message
# only to a later rank (providers.md §3). Final statuses have the top rank.
RECEIPT_ORDER: dict[str, int] = {
    Message.Status.QUEUED: 0,
    Message.Status.SENDING: 0,
    Message.Status.SENT: 1,
    Message.Status.BUFFERED: 2,
    Message.Status.DELIVERED: 3,
    Message.Status.FAILED: 3,
    Message.Status.EXPIRED: 3,
}
RECEIPT_STATUSES = [status for status, rank in RECEIPT_ORDER.items() if rank >= 1]


def per_row(model: type[models.Model], name: str, values: Mapping[int, object]) -> Value | RawSQL:
    """An UPDATE value for field `name` that differs by primary key; plain when all agree.

    Written as a CASE in SQL: the ORM's Case(When(...)) costs more CPU per
    row than the whole UPDATE. Values go through the field's own conversion.
    """
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)
    distinct = set(values.values())
    if len(distinct) == 1:
        return Value(distinct.pop(), output_field=field)
    quote = connection.ops.quote_name
    params: list[object] = []
    for pk, value in values.items():
        params += [pk, field.get_db_prep_save(value, connection)]
    whens = " WHEN %s THEN %s" * len(values)
    return RawSQL(f"CASE {quote(model._meta.db_table)}.{quote('id')}{whens} END", params, field)


def insert_values(
    fields: Sequence[models.Field[Any, Any]], rows: Sequence[Sequence[Any]]
) -> tuple[str, list[Any]]:
    """The rows part of an INSERT of prepared values, and its parameters.

    On PostgreSQL an array per column: a placeholder per value made psycopg
    parse the statement anew each time (it caches those of 50 or fewer),
    3-4 CPU-ms of a batch of 100 tickets on a slow core.
    """
    if connection.vendor == "postgresql":
        columns = [list(column) for column in zip(*rows, strict=True)]
        return unnest_sql(tuple(fields)), columns
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    return "VALUES " + ", ".join([row] * len(rows)), [value for values in rows for value in values]


@functools.cache
def unnest_sql(fields: tuple[models.Field[Any, Any], ...]) -> str:
    """`SELECT * FROM UNNEST(…)` of an array per field, cast to its type (PostgreSQL only)."""
    arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in fields)
    return f"SELECT * FROM UNNEST({arrays})"


INSERT_ROWS = 500  # messages per INSERT: SQLite takes 32,766 values in a statement


@functools.cache
def insert_plan(vendor: str) -> tuple[list[models.Field[Any, Any]], list[Callable[[Message], Any]]]:
    """Message's columns but the id, and how to read each one's value off a message.

    Strings, numbers and foreign keys go as they are, and on PostgreSQL
    times and UUIDs too, as the ORM passes them to psycopg; on SQLite these
    go through their field, which writes them as text.
    """
    fields = [field for field in Message._meta.concrete_fields if not field.primary_key]
    plain: tuple[type[models.Field[Any, Any]], ...] = (
        models.CharField,
        models.TextField,
        models.IntegerField,
        models.ForeignKey,
    )
    if vendor == "postgresql":
        plain += (models.DateTimeField, models.UUIDField)

    def reader(field: models.Field[Any, Any]) -> Callable[[Message], Any]:
        read = attrgetter(field.attname)
        if isinstance(field, plain):
            return read
        return lambda message: field.get_db_prep_save(read(message), connection)

    return fields, [reader(field) for field in fields]
