"""`smsdesk serve`: migrate, then the web processes and the worker."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import connections

# Web processes: Python runs one request at a time per process, so one per
# core, with a few threads each to overlap database waits (bench/, issue 3).
DEFAULT_WORKERS = os.cpu_count() or 1
DEFAULT_THREADS = 4
WORKER_STOP_WAIT = 30.0  # seconds for the worker to finish its batch after SIGTERM


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
            help=f"request threads in each web process (default {DEFAULT_THREADS})",
        )
        parser.add_argument(
            "--no-worker", action="store_true", help="web only; run `smsdesk worker` apart"
        )

    def handle(
        self,
        *args: Any,
        host: str,
        port: int,
        workers: int,
        threads: int,
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

        server = Server(
            "smsdesk.wsgi:application",
            address=host,
            port=port,
            interface=Interfaces.WSGI,
            workers=max(1, workers),
            blocking_threads=max(1, threads),
            websockets=False,
            log_level=LogLevels.warning,
        )
        # The worker is a child process of its own (`smsdesk worker`): a
        # thread here would be forked into every web process with whatever
        # locks it held. Webhooks from the web processes reach it through its
        # poll of the pending-events index.
        work = None if no_worker else self.start_worker()
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
            if work is not None:
                self.stop_worker(work)
            self.stdout.write("smsdesk stopped")

    def start_worker(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "smsdesk.cli", "worker", "--skip-checks"])

    def stop_worker(self, work: subprocess.Popen[bytes]) -> None:
        if work.poll() is None:
            work.terminate()  # SIGTERM: it finishes the current batch, then exits
        try:
            work.wait(timeout=WORKER_STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.stderr.write("the worker did not stop in time; killing it")
            work.kill()
            work.wait()

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
