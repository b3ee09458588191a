"""Publishing "tickets changed" events, and forgetting old ones.

publish() writes one Event row in the caller's transaction, so connected
inboxes learn of a change exactly when it becomes visible, and never of one
that was rolled back. Other processes hear of it through PostgreSQL's NOTIFY
(delivered at commit) or, on SQLite, by their hub's short poll; the hub of
this process, if any, is woken after commit.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Field
from django.utils import timezone

from .models import Event, Presence

CHANNEL = "smsdesk_live"  # the LISTEN/NOTIFY channel
# How long events are kept for reconnecting browsers. One that was away
# longer gets a "reset" and refreshes what it shows.
KEEP = timedelta(minutes=10)
PRUNE_EVERY = 60.0  # seconds between maybe_prune()'s deletes, per process
STALE_PRESENCE = timedelta(minutes=5)  # rows left by connections that died with their process

_local_listeners: list[Callable[[], None]] = []
_last_prune = 0.0
_prune_lock = threading.Lock()


def publish(ticket_ids: Iterable[int], kind: str) -> int | None:
    """Tell connected inboxes that these tickets changed; call inside the changing transaction.

    One statement whatever the number of tickets (the worker calls this once
    per batch): on PostgreSQL the INSERT and the NOTIFY travel together.
    Returns the event's id (None if there were no tickets).
    """
    ids = sorted({int(pk) for pk in ticket_ids})
    if not ids:
        return None
    values = [field.get_db_prep_save(value, connection) for field, value in row(ids, kind)]
    with connection.cursor() as cursor:
        cursor.execute(insert_sql(connection.vendor), values)
        event_id = int(cursor.fetchone()[0])
    transaction.on_commit(wake_local)
    return event_id


def row(ids: list[int], kind: str) -> list[tuple[Field[Any, Any], object]]:
    """The new row's fields and values, in insert_sql's column order."""
    fields = {field.name: field for field in Event._meta.concrete_fields}
    return [(fields["tickets"], ids), (fields["kind"], kind), (fields["created"], timezone.now())]


@functools.cache
def insert_sql(vendor: str) -> str:
    """The INSERT (and, on PostgreSQL, the NOTIFY riding on it) as one statement."""
    quote = connection.ops.quote_name
    columns = ", ".join(quote(name) for name in ("tickets", "kind", "created"))
    insert = (
        f"INSERT INTO {quote(Event._meta.db_table)} ({columns}) VALUES (%s, %s, %s)"
        f" RETURNING {quote('id')}"
    )
    if vendor != "postgresql":
        return insert
    # pg_notify in a SELECT over the INSERT's RETURNING: one round trip. The
    # payload is empty on purpose: PostgreSQL folds identical notifications
    # of one transaction into one, and listeners read the rows anyway.
    return f"WITH added AS ({insert}) SELECT id, pg_notify('{CHANNEL}', '') FROM added"


def listen_local(wake: Callable[[], None]) -> None:
    """Have `wake` called after every commit that published in this process."""
    _local_listeners.append(wake)


def unlisten_local(wake: Callable[[], None]) -> None:
    if wake in _local_listeners:
        _local_listeners.remove(wake)


def wake_local() -> None:
    for wake in list(_local_listeners):
        wake()


def prune(now: float | None = None) -> int:
    """Delete events older than KEEP (never the newest) and stale presence rows. Returns events deleted.

    The newest event is kept so that its id still tells a reconnecting
    browser whether it missed anything (see hub.replay).
    """
    cutoff = timezone.now() - KEEP
    newest = Event.objects.order_by("-id").values_list("id", flat=True).first()
    if newest is None:
        return 0
    deleted, _ = Event.objects.filter(created__lt=cutoff, id__lt=newest).delete()
    Presence.objects.filter(seen_at__lt=timezone.now() - STALE_PRESENCE).delete()
    return deleted


def maybe_prune() -> None:
    """prune(), at most once every PRUNE_EVERY seconds in this process; cheap to call often."""
    global _last_prune
    with _prune_lock:
        if time.monotonic() - _last_prune < PRUNE_EVERY:
            return
        _last_prune = time.monotonic()
    prune()
