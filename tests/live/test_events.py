"""publish() writes one event per call, visible exactly when the change commits."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from smsdesk.live import events
from smsdesk.live.events import prune, publish
from smsdesk.live.models import Event, Presence


@pytest.mark.django_db(transaction=True)
def test_it_stores_one_event_naming_every_ticket_once() -> None:
    publish([7, 3, 7, 5], "message")
    event = Event.objects.get()
    assert (event.tickets, event.kind) == ([3, 5, 7], "message")


@pytest.mark.django_db(transaction=True)
def test_it_stores_nothing_for_no_tickets() -> None:
    publish([], "message")
    assert not Event.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_publishes_nothing_and_wakes_no_one() -> None:
    woken = threading.Event()
    events.listen_local(woken.set)
    try:
        with pytest.raises(RuntimeError), transaction.atomic():
            publish([1], "message")
            raise RuntimeError("the change fails")
        assert not Event.objects.exists()
        assert not woken.is_set()
        with transaction.atomic():
            publish([1], "message")
            assert not woken.is_set(), "woken before the commit"
        assert woken.is_set()
    finally:
        events.unlisten_local(woken.set)


@pytest.mark.django_db
def test_pruning_forgets_old_events_but_keeps_the_newest(agent) -> None:  # type: ignore[no-untyped-def]
    old = timezone.now() - events.KEEP - timedelta(minutes=1)
    for kind in ("a", "b", "c"):
        publish([1], kind)
    Event.objects.update(created=old)
    publish([2], "recent")
    Presence.objects.create(token="gone", agent=agent, ticket_id=1, seen_at=old)
    Presence.objects.create(token="here", agent=agent, ticket_id=1)

    assert prune() == 3
    assert list(Event.objects.values_list("kind", flat=True)) == ["recent"]
    assert list(Presence.objects.values_list("token", flat=True)) == ["here"]

    Event.objects.update(created=old)
    assert prune() == 0, "the newest event tells reconnecting browsers what they missed"
