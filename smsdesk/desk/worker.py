"""The worker: a plain loop that threads inbound texts and sends the outbox."""

from __future__ import annotations

import logging
import random
import threading
from datetime import timedelta

from django.db import DatabaseError, OperationalError, close_old_connections, transaction

from smsdesk.sms import providers
from smsdesk.sms.models import InboundEvent, work_available
from smsdesk.sms.providers import OutboundSms, ProviderError

from .models import Message, receive

log = logging.getLogger(__name__)

BATCH = 100
IDLE_WAIT = 0.5  # seconds; a wake-up from this process ends the wait early
BACKOFF_BASE = 5.0
BACKOFF_CAP = 3600.0
RETRY_AFTER_CAP = 86400.0  # the longest wait a provider's Retry-After may ask for


def process_inbound(limit: int = BATCH) -> int:
    """Thread pending journal events into tickets, oldest first. Returns how many.

    One event per transaction, claimed with SKIP LOCKED (PostgreSQL) so
    parallel workers never thread the same one. A whole batch in one
    transaction would hold every new contact's unique-index entry until the
    end, and two workers meeting the same new numbers in different orders
    would deadlock. A failing event keeps its error and is left for an
    operator to re-process; the events after it carry on.
    """
    done = 0
    while done < limit:
        with transaction.atomic():
            event = InboundEvent.pending().select_for_update(skip_locked=True).first()
            if event is None:
                break
            thread_one(event)
        done += 1
    return done


def thread_one(event: InboundEvent) -> None:
    try:
        with transaction.atomic():
            receive(event)
    except OperationalError:
        # A deadlock victim or a lost connection is no fault of the event:
        # let the pass fail (run() retries it) and leave the event pending.
        raise
    except Exception as exc:  # noqa: BLE001 - any bug must leave the event visible, not lost
        log.exception("could not thread inbound event %s", event.pk)
        InboundEvent.objects.filter(pk=event.pk).update(error=f"{type(exc).__name__}: {exc}")


def backoff(attempts: int) -> timedelta:
    """Exponential with jitter, so a recovering provider is not hit all at once.

    Waits between half and all of BACKOFF_BASE * 2**(attempts-1), capped at
    BACKOFF_CAP, so each wait is at least as long as the one before.
    """
    # Clamped, as a long outage takes attempts past where 2**n fits a float.
    exponent = min(max(attempts - 1, 0), 32)
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2**exponent)
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def send_due(limit: int = BATCH) -> int:
    """Send due outbound messages, up to `limit`. Returns how many were tried.

    Each message is claimed just before it is sent, not the whole batch up
    front: a claim is a lease (Message.LEASE), and rows waiting behind slow
    sends would see their leases run out and be sent again by another worker.
    """
    provider = providers.outbound()
    done = 0
    while done < limit and (claimed := Message.claim_due(1)):
        send_one(provider, claimed[0])
        done += 1
    return done


def send_one(provider: providers.Provider, message: Message) -> None:
    """Send one claimed message; transient failures wait, permanent ones fail."""
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
            retry(message, str(exc), exc.retry_after)
    except Exception as exc:  # noqa: BLE001 - a bug or bad setting must leave the row retried, not stranded
        log.exception("sending message %s failed unexpectedly", message.uuid)
        retry(message, f"{type(exc).__name__}: {exc}", None)
    else:
        message.mark_sent(provider.name, provider_id)


def retry(message: Message, error: str, retry_after: float | None) -> None:
    delay = backoff(message.attempts)
    if retry_after is not None:
        # Honour the provider's wait, within reason: a huge value would
        # overflow the timestamp and break the worker's pass.
        delay = max(delay, timedelta(seconds=min(retry_after, RETRY_AFTER_CAP)))
    log.info("message %s will be retried in %.0f s: %s", message.uuid, delay.total_seconds(), error)
    message.retry_later(error, delay)


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
        except Exception:  # noqa: BLE001 - a bug must not end the worker; the rows stay pending
            log.exception("worker pass failed; retrying")
            done = 0
            stop.wait(1.0)
        if not done:
            work_available.wait(IDLE_WAIT)
    log.info("worker stopped")
