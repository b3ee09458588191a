"""For tests that drive the worker: texts in the journal, and the worker on a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import connection

from smsdesk.desk import worker
from smsdesk.sms.models import InboundEvent
from smsdesk.sms.providers import InboundSms

WAIT = 30.0  # seconds; a bound on every wait, never a pass/fail threshold


def text(sender: str, body: str, key: str, after: timedelta | None = None) -> InboundEvent:
    InboundEvent.record(
        "messagebird", InboundSms(sender=sender, recipient="", text=body, key=key), raw={}
    )
    event = InboundEvent.objects.get(key=key)
    if after is not None:
        # Arrival times a few ms apart, as webhooks come in.
        first = InboundEvent.objects.order_by("id").first()
        assert first is not None
        InboundEvent.objects.filter(pk=event.pk).update(received_at=first.received_at + after)
    return event


@contextmanager
def worker_running() -> Iterator[None]:
    """worker.run on a thread of its own until the block ends."""
    stop = threading.Event()

    def work() -> None:
        try:
            worker.run(stop)
        finally:
            connection.close()  # each thread has its own connection

    running = threading.Thread(target=work)
    running.start()
    try:
        yield
    finally:
        stop.set()
        running.join(WAIT)


def wait_until_threaded() -> None:
    """Until the journal has nothing pending, or WAIT runs out."""
    for _ in range(int(WAIT / 0.05)):
        if not InboundEvent.pending().exists():
            return
        threading.Event().wait(0.05)
