"""`smsdesk worker`: only the worker, for deployments with several processes."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from smsdesk.desk import worker


class Command(BaseCommand):
    help = "Thread inbound texts into tickets and send queued replies, until SIGTERM."

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()

        def finish(signum: int, frame: object) -> None:
            stop.set()  # the current batch is finished, then the loop ends

        signal.signal(signal.SIGTERM, finish)
        signal.signal(signal.SIGINT, finish)
        worker.run(stop)
