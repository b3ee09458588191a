"""Inbound texts into tickets: which ticket each joins, keywords, confirmations.

The worker hands journal events to receive_all in batches; everything here
runs inside its transaction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from smsdesk.lib import hours as hours_lib
from smsdesk.live.events import publish
from smsdesk.sms.models import InboundEvent

from .models import REF_ALPHABET, REF_LENGTH, Contact, Message, Ticket

# Whole-message keywords (trimmed, case-folded), as carriers and providers
# read them (providers.md §9). Any other text is an ordinary message.
OPT_OUT_WORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout", "opt out"}
)
OPT_IN_WORDS = frozenset({"start", "yes", "unstop"})
HELP_WORDS = frozenset({"help", "info"})


def keyword(text: str) -> str:
    """ "opt-out", "opt-in", "help" or "" for a customer's text."""
    word = " ".join(text.split()).casefold()
    if word in OPT_OUT_WORDS:
        return "opt-out"
    if word in OPT_IN_WORDS:
        return "opt-in"
    if word in HELP_WORDS:
        return "help"
    return ""


def confirmation_text(ref: str, at: datetime | None = None) -> str:
    """The confirmation for a ticket opened by a text at `at`, out-of-hours note included."""
    text = settings.SMSDESK_CONFIRMATION_TEXT.replace("{ref}", ref)
    hours = business_hours()
    if at is None or hours.is_open(at) or not settings.SMSDESK_OUT_OF_HOURS_TEXT:
        return text
    opening = hours.next_open(at)
    when = f"{opening:%A} {opening:%H:%M}" if opening else "our next opening"
    return f"{text} {settings.SMSDESK_OUT_OF_HOURS_TEXT.replace('{next_open}', when)}"


def business_hours() -> hours_lib.Hours:
    return hours_lib.parse(settings.SMSDESK_BUSINESS_HOURS, settings.SMSDESK_BUSINESS_TIME_ZONE)


def receive(event: InboundEvent) -> Message:
    """Thread one journal event into its contact's open ticket."""
    return receive_all([event])[0]


@transaction.atomic
def receive_all(events: Sequence[InboundEvent]) -> list[Message]:
    """Thread journal events into their contacts' tickets, a few queries for all.

    A text that quotes the ref of one of the sender's own tickets goes to
    that ticket (reopened if closed). Any other text goes to the contact's
    current ticket (Ticket.open_for_all): the first text from a number, or
    the first after the reopen window, opens a ticket and queues its
    confirmation. Messages carry their event's arrival time, so a thread
    reads in arrival order whichever worker stored which text. Returns the
    inbound messages, in arrival order.
    """
    events = sorted(events, key=lambda event: (event.received_at, event.pk))
    contacts = Contact.for_phones(event.sender for event in events)
    quoted = quoted_tickets(events, contacts)
    texts: dict[Contact, tuple[datetime, datetime]] = {}
    for event in events:
        if event.pk not in quoted:
            contact = contacts[event.sender]
            first, _ = texts.get(contact, (event.received_at, event.received_at))
            texts[contact] = (first, event.received_at)
    tickets = Ticket.open_for_all(texts)
    target = {
        event.pk: quoted.get(event.pk) or tickets[contacts[event.sender].pk][0] for event in events
    }
    messages = Message.insert_all(
        Message(
            ticket=target[event.pk],
            direction=Message.Direction.IN,
            body=event.text,
            created=event.received_at,
            event=event,
            provider=event.provider,
            provider_message_id=event.key,
        )
        for event in events
    )
    opened = {ticket.pk for ticket, new in tickets.values() if new}
    latest: dict[int, datetime] = {}
    for event in events:
        if target[event.pk].pk not in opened:  # a ticket opened here has its times already
            latest[target[event.pk].pk] = event.received_at
    Ticket.touch_all(latest)
    answers = apply_keywords(messages, contacts)
    confirm = [
        ticket
        for ticket, new in tickets.values()
        if new and ticket.contact.can_receive_sms and not ticket.contact.opted_out_at
    ]
    confirm.sort(key=lambda ticket: (ticket.created, ticket.pk))  # confirmed in arrival order
    Message.queue_all(
        [(ticket, confirmation_text(ticket.ref, ticket.created)) for ticket in confirm],
        purpose="confirmation",
    )
    for purpose, answer in answers.items():
        Message.queue_all(answer, purpose=purpose)
    InboundEvent.objects.filter(pk__in=[event.pk for event in events]).update(
        processed_at=timezone.now()
    )
    publish(sorted({ticket.pk for ticket in target.values()}), "message")
    return messages


# "#K7F3QX" anywhere, or the bare ref as the first word: how customers quote
# the ref from their confirmation. Case-insensitive, as phones capitalise freely.
QUOTED_REF = re.compile(
    rf"#([{REF_ALPHABET}]{{{REF_LENGTH}}})\b|^\s*([{REF_ALPHABET}]{{{REF_LENGTH}}})\b",
    re.IGNORECASE,
)


def quoted_tickets(
    events: Sequence[InboundEvent], contacts: Mapping[str, Contact]
) -> dict[int, Ticket]:
    """Events that quote a ref of one of their sender's own tickets, and that ticket.

    A ref of someone else's ticket is ignored (the text threads as usual):
    knowing a ref must not let one customer write into another's ticket.
    A merged ticket's ref leads to the ticket it was merged into. Closed
    targets are reopened. One query for the batch, plus the reopening.
    """
    wanted: dict[int, list[str]] = {}
    for event in events:
        refs = [a or b for a, b in QUOTED_REF.findall(event.text)]
        if refs:
            wanted[event.pk] = [ref.upper() for ref in refs]
    if not wanted:
        return {}
    all_refs = {ref for refs in wanted.values() for ref in refs}
    found = {
        ticket.ref: ticket
        for ticket in Ticket.objects.filter(ref__in=all_refs).select_related("merged_into")
    }
    routed: dict[int, Ticket] = {}
    for event in events:
        contact = contacts[event.sender]
        for ref in wanted.get(event.pk, []):
            ticket = found.get(ref)
            if ticket is not None and ticket.merged_into is not None:
                ticket = ticket.merged_into
            if ticket is not None and ticket.contact_id == contact.pk:
                ticket.contact = contact
                routed[event.pk] = ticket
                break
    closed = sorted({t.pk for t in routed.values() if t.status == Ticket.Status.CLOSED})
    if closed:
        Ticket.objects.filter(pk__in=closed).update(status=Ticket.Status.OPEN, closed_at=None)
        for ticket in routed.values():
            ticket.status, ticket.closed_at = Ticket.Status.OPEN, None
    return routed


def apply_keywords(
    messages: Sequence[Message], contacts: Mapping[str, Contact]
) -> dict[str, list[tuple[Ticket, str]]]:
    """STOP, START and HELP texts, in arrival order: each contact's opt-out state, and the answers.

    Opting out cancels every SMS still queued for the contact; the one
    answer to a STOP is the only text an opted-out contact is sent. A
    repeated STOP is not answered again. Returns the answers to queue, by purpose.
    """
    answers: dict[str, list[tuple[Ticket, str]]] = {"opt-out": [], "opt-in": [], "help": []}
    changed: dict[int, Contact] = {}
    for message in messages:
        kind = keyword(message.body)
        if not kind:
            continue
        ticket = message.ticket
        contact = ticket.contact = (
            contacts[message.event.sender] if message.event else ticket.contact
        )
        if not contact.can_receive_sms:
            continue
        if kind == "opt-out" and not contact.opted_out_at:
            contact.opted_out_at, contact.opt_out_message = message.created, message
            changed[contact.pk] = contact
            answers["opt-out"].append((ticket, settings.SMSDESK_OPT_OUT_TEXT))
        elif kind == "opt-in" and contact.opted_out_at:
            contact.opted_out_at, contact.opt_out_message = None, None
            changed[contact.pk] = contact
            answers["opt-in"].append((ticket, settings.SMSDESK_OPT_IN_TEXT))
        elif kind == "help" and not contact.opted_out_at:
            answers["help"].append((ticket, settings.SMSDESK_HELP_TEXT))
    if changed:
        Contact.objects.bulk_update(changed.values(), ["opted_out_at", "opt_out_message"])
        Message.cancel_queued([pk for pk, contact in changed.items() if contact.opted_out_at])
    # A contact who opted out and back in within one batch gets only the last answer.
    for purpose in ("opt-out", "opt-in"):
        answers[purpose] = [
            (ticket, text)
            for ticket, text in answers[purpose]
            if text and bool(ticket.contact.opted_out_at) == (purpose == "opt-out")
        ]
    answers["help"] = [(ticket, text) for ticket, text in answers["help"] if text]
    return answers
