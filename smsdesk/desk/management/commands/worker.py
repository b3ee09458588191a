"""`smsdesk worker`: only the worker, for deployments with several processes."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from smsdesk.desk import worker

# The worker runs at a lower CPU priority than the web processes. A webhook
# must be acknowledged within the provider's timeout, and every CPU
# millisecond the worker takes during a burst is one the web processes lack;
# threading a text into its ticket can wait a few seconds. Under a burst the
# journal grows and the worker catches up after it (bench/ingest.py prints
# both); with CPU to spare, as almost always, the priority changes nothing.
# 10 rather than 19: the worker still gets about a tenth of a busy core, so
# replies and threading never stop under sustained load.
DEFAULT_NICE = 10


class Command(BaseCommand):
    help = "Thread inbound texts into tickets and send queued replies, until SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--nice",
            type=int,
            default=DEFAULT_NICE,
            help=f"lower the CPU priority by this much (default {DEFAULT_NICE}; 0 keeps it)",
        )

    def handle(self, *args: Any, nice: int, **options: Any) -> None:
        # Before any thread starts: threads inherit the priority (on Linux it is per thread).
        if nice > 0:
            os.nice(nice)
        stop = threading.Event()

        def finish(signum: int, frame: object) -> None:
            stop.set()  # the current batch is finished, then the loop ends

        signal.signal(signal.SIGTERM, finish)
        signal.signal(signal.SIGINT, finish)
        worker.run(stop)
