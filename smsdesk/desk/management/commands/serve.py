"""`smsdesk serve`: migrate, then the web processes and the workers."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import connections

# Web processes: Python runs one request at a time per process, so one per
# core, with a few requests at once in each to overlap database waits
# (bench/, issue 3); smsdesk.live.gate keeps it to that many, but for
# webhooks and /healthz, which use no connection of their own.
DEFAULT_WORKERS = os.cpu_count() or 1
DEFAULT_THREADS = 4
# A live connection (the inbox's Server-Sent Events) holds a server thread
# for as long as its page is open, but only waits: these threads come on top
# of the ones for requests, so open pages never hold up a request
# (bench/live.py measures it). A process with this many open refuses more
# (the browser comes back later).
DEFAULT_STREAMS = 256
# Worker processes: on PostgreSQL one more than the cores. A worker spends
# much of each batch waiting on the database, and one process has one
# core's worth of Python, so after a burst a single worker left the cores
# 40 % idle; on 2 cores two workers confirmed a burst almost twice as fast
# as one, three about 15 % faster again, four no faster than three
# (docs/performance.md). Workers claim with SKIP LOCKED, and each is niced
# and gives way to webhooks during a burst: the extra ones took nothing
# measurable from them. SQLite writes one transaction at a time: a second
# worker there only waits for the first.
DEFAULT_WORKER_PROCESSES_POSTGRES = (os.cpu_count() or 1) + 1
WORKER_STOP_WAIT = 30.0  # seconds for the worker to finish its batch after SIGTERM
# Seconds a web process may take to stop before it is killed: it finishes the
# requests under way, and its live streams end at once (stop_streams_at_shutdown).
WEB_STOP_WAIT = 10


class Command(BaseCommand):
    help = "Run the desk: apply migrations, start the web app and the worker (port 8080)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for all)"
        )
        parser.add_argument("--port", type=int, default=8080)
        parser.add_argument(
            "--workers",
            type=int,
            default=DEFAULT_WORKERS,
            help=f"web processes (default: one per CPU, here {DEFAULT_WORKERS})",
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=DEFAULT_THREADS,
            help=(
                "requests other than webhooks each web process runs at once, each with"
                f" a database connection of its own (default {DEFAULT_THREADS})"
            ),
        )
        parser.add_argument(
            "--streams",
            type=int,
            default=DEFAULT_STREAMS,
            help=f"live inbox connections each web process holds (default {DEFAULT_STREAMS})",
        )
        parser.add_argument(
            "--worker-processes",
            type=int,
            default=None,
            help=(
                "worker processes (default: on PostgreSQL one more than the CPUs, here"
                f" {DEFAULT_WORKER_PROCESSES_POSTGRES}; on SQLite one)"
            ),
        )
        parser.add_argument(
            "--no-worker",
            action="store_true",
            help="web only, as --worker-processes 0; run `smsdesk worker` apart",
        )

    def handle(
        self,
        *args: Any,
        host: str,
        port: int,
        workers: int,
        threads: int,
        streams: int,
        worker_processes: int | None,
        no_worker: bool,
        **options: Any,
    ) -> None:
        from granian.constants import Interfaces
        from granian.log import LogLevels
        from granian.server import Server

        call_command("migrate", interactive=False, verbosity=0)
        self.ensure_demo_agent()
        # The web processes are forked from this one: none may inherit a
        # database connection.
        connections.close_all()

        workers, threads, streams = max(1, workers), max(1, threads), max(0, streams)
        # Read by the web processes, which inherit this environment.
        os.environ["SMSDESK_REQUEST_SLOTS"] = str(threads)
        os.environ["SMSDESK_LIVE_MAX_STREAMS"] = str(streams)
        stop_streams_at_shutdown()
        server = Server(
            # The desk, `threads` requests at a time, each with its own
            # database connection; live streams wait on threads of their own.
            "smsdesk.live.gate:application",
            address=host,
            port=port,
            interface=Interfaces.WSGI,
            workers=workers,
            blocking_threads=threads + streams,
            # Granian's own default, unless the threads need more.
            backpressure=max(1024 // workers, threads + streams),
            workers_kill_timeout=WEB_STOP_WAIT,
            websockets=False,
            log_level=LogLevels.warning,
        )
        # Granian warns when a process may have many more threads than cores;
        # all but `threads` of these only wait on a live connection.
        logging.getLogger("_granian").addFilter(
            lambda record: "Python threads" not in record.getMessage()
        )
        # Each worker is a child process of its own (`smsdesk worker`): a
        # thread here would be forked into every web process with whatever
        # locks it held. Webhooks from the web processes reach the workers
        # through their poll of the journal (worker.Idle).
        if worker_processes is None:
            worker_processes = default_worker_processes(connections["default"].vendor)
        work = [self.start_worker() for _ in range(0 if no_worker else max(0, worker_processes))]
        shown = "localhost" if host in ("0.0.0.0", "127.0.0.1", "::") else host
        self.stdout.write(f"smsdesk is running on http://{shown}:{port}/ ({self.mode()})")
        self.stdout.write(f"  agent inbox: http://{shown}:{port}/admin")
        if settings.SMSDESK_PROVIDER == "simulator":
            self.stdout.write(f"  phone simulator: http://{shown}:{port}/simulator/")
        self.stdout.write(f"  webhook: http://{shown}:{port}/webhook")
        self.stdout.flush()
        try:
            # Granian handles SIGTERM and SIGINT: it stops its web processes
            # and returns.
            server.serve()
        finally:
            self.stop_workers(work)
            self.stdout.write("smsdesk stopped")

    def start_worker(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "smsdesk.cli", "worker", "--skip-checks"])

    def stop_workers(self, work: list[subprocess.Popen[bytes]]) -> None:
        for process in work:
            if process.poll() is None:
                process.terminate()  # SIGTERM: it finishes the current batch, then exits
        deadline = time.monotonic() + WORKER_STOP_WAIT
        for process in work:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write("a worker did not stop in time; killing it")
                process.kill()
                process.wait()

    def mode(self) -> str:
        engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        return f"{settings.SMSDESK_ENV} mode, {engine}, provider {settings.SMSDESK_PROVIDER}"

    def ensure_demo_agent(self) -> None:
        """A first demo run gets one agent, whose password is shown this once."""
        users = get_user_model()
        if settings.PRODUCTION or users.objects.exists():
            return
        password = secrets.token_urlsafe(9)
        users.objects.create_superuser("admin", "", password)
        self.stdout.write(
            self.style.SUCCESS(f"Created the first agent. Sign in as admin / {password}")
        )
        self.stdout.write(
            "  (shown once; change it at /django-admin/ or with `smsdesk changepassword admin`)"
        )


def default_worker_processes(vendor: str) -> int:
    return DEFAULT_WORKER_PROCESSES_POSTGRES if vendor == "postgresql" else 1


def stop_streams_at_shutdown() -> None:
    """End the live streams of a web process as soon as it is told to stop.

    Granian lets the requests under way finish before a web process exits,
    and a live stream runs for minutes. Its web processes are forked from
    this one and install their signal handlers with granian._signals when
    they start, so wrapping that here reaches them: on SIGTERM or SIGINT the
    streams end at once (browsers reconnect to the next server and catch
    up), then granian's own handler runs. Should a granian release move
    this, WEB_STOP_WAIT still bounds the stop.
    """
    from granian import _signals

    original = getattr(_signals, "set_sync_signals", None)
    if original is None or getattr(original, "stops_live_streams", False):
        return

    def set_sync_signals() -> Any:
        event = original()
        for signum in (signal.SIGTERM, signal.SIGINT):
            chain_handler(signum)
        return event

    set_sync_signals.stops_live_streams = True  # type: ignore[attr-defined]
    _signals.set_sync_signals = set_sync_signals


def chain_handler(signum: int) -> None:
    from smsdesk.live.hub import hub

    handler = signal.getsignal(signum)
    if not callable(handler):
        return

    def end_streams_first(number: int, frame: FrameType | None) -> Any:
        hub.shut()  # never blocks
        return handler(number, frame)

    signal.signal(signum, end_streams_first)
