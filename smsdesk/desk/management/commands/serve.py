"""`smsdesk serve`: migrate, then web and worker in one process."""

from __future__ import annotations

import secrets
import signal
import threading
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from smsdesk.desk import worker


class Command(BaseCommand):
    help = "Run the desk: apply migrations, start the web app and the worker (port 8080)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for all)"
        )
        parser.add_argument("--port", type=int, default=8080)
        parser.add_argument("--threads", type=int, default=8, help="web request threads")
        parser.add_argument(
            "--no-worker", action="store_true", help="web only; run `smsdesk worker` apart"
        )

    def handle(
        self, *args: Any, host: str, port: int, threads: int, no_worker: bool, **options: Any
    ) -> None:
        import waitress

        from smsdesk.wsgi import application

        call_command("migrate", interactive=False, verbosity=0)
        self.ensure_demo_agent()

        stop = threading.Event()
        work = threading.Thread(target=worker.run, args=(stop,), name="worker", daemon=True)
        if not no_worker:
            work.start()
        server = waitress.create_server(application, host=host, port=port, threads=threads)
        shown = "localhost" if host in ("0.0.0.0", "127.0.0.1", "::") else host
        self.stdout.write(f"smsdesk is running on http://{shown}:{port}/ ({self.mode()})")
        self.stdout.write(f"  agent inbox: http://{shown}:{port}/admin")
        if settings.SMSDESK_PROVIDER == "simulator":
            self.stdout.write(f"  phone simulator: http://{shown}:{port}/simulator/")
        self.stdout.write(f"  webhook: http://{shown}:{port}/webhook")

        def interrupt(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, interrupt)
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
            stop.set()
            if work.is_alive():
                work.join(timeout=30)
            self.stdout.write("smsdesk stopped")

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
