"""Change events for connected inboxes, and who is looking at which ticket."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Event(models.Model):
    """Some tickets changed: one row per publish() call, written in the changing transaction.

    The id is the Server-Sent Events id a browser hands back when it
    reconnects (Last-Event-ID), so it can be sent what it missed. Rows are
    kept for a few minutes (see events.prune); a browser away for longer
    refreshes everything. Ticket ids, not foreign keys: the desk depends on
    this app, not the other way round, and a row outlives nothing it names.
    """

    tickets = models.JSONField(help_text="Ids of the tickets that changed.")
    kind = models.CharField(max_length=16)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["created"], name="live_event_created")]

    def __str__(self) -> str:
        return f"{self.kind} {self.tickets}"


class Presence(models.Model):
    """An agent's open ticket page: one row per live connection, refreshed while it lasts.

    Per connection rather than per agent and ticket, so an agent with the
    ticket open in two tabs still shows as viewing it when one tab closes.
    A connection whose process died leaves a row that stops counting once
    `seen_at` is old (presence.FRESH) and is deleted later.
    """

    token = models.CharField(max_length=32, unique=True)
    agent = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    ticket_id = models.BigIntegerField()
    seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["ticket_id", "seen_at"], name="live_presence_ticket")]

    def __str__(self) -> str:
        return f"agent {self.agent_id} on ticket {self.ticket_id}"
