"""The worker: a plain loop that threads inbound texts and sends the outbox."""

from __future__ import annotations

import logging
import random
import threading
from datetime import timedelta

from django.db import DatabaseError, close_old_connections, transaction

from smsdesk.sms import providers
from smsdesk.sms.models import InboundEvent, work_available
from smsdesk.sms.providers import OutboundSms, ProviderError

from .models import Message, receive

log = logging.getLogger(__name__)

BATCH = 100
IDLE_WAIT = 0.5  # seconds; a wake-up from this process ends the wait early
BACKOFF_BASE = 5.0
BACKOFF_CAP = 3600.0


def process_inbound(limit: int = BATCH) -> int:
    """Thread pending journal events into tickets, oldest first. Returns how many.

    Events are claimed with SKIP LOCKED (PostgreSQL) so parallel workers
    never thread the same one. A failing event keeps its error and is left
    for an operator to re-process; the others in the batch carry on.
    """
    with transaction.atomic():
        events = list(InboundEvent.pending().select_for_update(skip_locked=True)[:limit])
        for event in events:
            try:
                with transaction.atomic():
                    receive(event)
            except Exception as exc:  # noqa: BLE001 - any bug must leave the event visible, not lost
                log.exception("could not thread inbound event %s", event.pk)
                InboundEvent.objects.filter(pk=event.pk).update(
                    error=f"{type(exc).__name__}: {exc}"
                )
    return len(events)


def backoff(attempts: int) -> timedelta:
    """Exponential with full jitter, so a recovering provider is not hit all at once."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(attempts - 1, 0))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def send_due(limit: int = BATCH) -> int:
    """Send claimed outbound messages. Transient failures wait; permanent ones fail."""
    messages = Message.claim_due(limit)
    if not messages:
        return 0
    provider = providers.outbound()
    for message in messages:
        sms = OutboundSms(
            to=message.ticket.contact.phone, body=message.body, reference=str(message.uuid)
        )
        try:
            provider_id = provider.send(sms)
        except ProviderError as exc:
            if exc.permanent:
                log.warning("message %s failed for good: %s", message.uuid, exc)
                message.mark_failed(str(exc))
            else:
                delay = backoff(message.attempts)
                if exc.retry_after is not None:
                    delay = max(delay, timedelta(seconds=exc.retry_after))
                log.info(
                    "message %s will be retried in %.0f s: %s",
                    message.uuid,
                    delay.total_seconds(),
                    exc,
                )
                message.retry_later(str(exc), delay)
        else:
            message.mark_sent(provider.name, provider_id)
    return len(messages)


def run_once() -> int:
    return process_inbound() + send_due()


def run(stop: threading.Event) -> None:
    """Work until `stop` is set; the current batch is always finished first."""
    log.info("worker started")
    while not stop.is_set():
        # Cleared before the pass, so work queued during it is not missed.
        work_available.clear()
        try:
            done = run_once()
        except DatabaseError:
            # A lost connection or a deadlock victim: nothing was committed,
            # the rows are still pending. Reconnect and try again shortly.
            log.exception("worker pass failed; retrying")
            close_old_connections()
            done = 0
            stop.wait(1.0)
        if not done:
            work_available.wait(IDLE_WAIT)
    log.info("worker stopped")
