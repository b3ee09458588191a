"""`smsdesk reprocess`: hand inbound events that failed back to the worker."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from smsdesk.sms.models import InboundEvent


class Command(BaseCommand):
    help = "List inbound events that failed to thread, or re-queue them (--all or by id)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", type=int, help="event ids to re-process")
        parser.add_argument("--all", action="store_true", help="re-process every failed event")

    def handle(self, *args: Any, ids: list[int], all: bool, **options: Any) -> None:
        failed = InboundEvent.objects.exclude(error="").filter(processed_at__isnull=True)
        if not ids and not all:
            for event in failed.order_by("id"):
                self.stdout.write(
                    f"{event.pk}\t{event.received_at:%Y-%m-%d %H:%M:%S}\t{event.sender}\t{event.error}"
                )
            self.stdout.write(f"{failed.count()} failed event(s); re-queue with --all or by id.")
            return
        chosen = failed if all else failed.filter(pk__in=ids)
        count = chosen.update(error="")
        self.stdout.write(
            f"Re-queued {count} event(s); the worker threads them within half a minute."
        )
