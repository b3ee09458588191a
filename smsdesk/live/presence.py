"""Who is looking at a ticket: one Presence row per open ticket page's live connection."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from .events import publish
from .models import Presence

# A connection refreshes its row every hub.REFRESH seconds; one not seen for
# this long belongs to a page that is gone (its process died, say).
FRESH = timedelta(seconds=45)


def viewers(ticket_id: int, exclude_agent_id: int) -> list[str]:
    """Usernames of the other agents who have the ticket open now, sorted."""
    agents = (
        Presence.objects.filter(ticket_id=ticket_id, seen_at__gte=timezone.now() - FRESH)
        .exclude(agent_id=exclude_agent_id)
        .values("agent_id")
    )
    users = get_user_model().objects.filter(pk__in=agents)
    return sorted(
        str(name) for name in users.values_list(get_user_model().USERNAME_FIELD, flat=True)
    )


def join(agent_id: int, ticket_id: int) -> tuple[str, int]:
    """Record an agent's page on a ticket: the token leave() takes, and the event saying so."""
    token = secrets.token_hex(16)
    with transaction.atomic():
        Presence.objects.create(token=token, agent_id=agent_id, ticket_id=ticket_id)
        event_id = publish([ticket_id], "presence")
    assert event_id is not None
    return token, event_id


def leave(tokens: Iterable[str]) -> None:
    """Forget these pages, and tell their tickets' other viewers."""
    tokens = list(tokens)
    if not tokens:
        return
    with transaction.atomic():
        gone = Presence.objects.filter(token__in=tokens)
        tickets = list(gone.values_list("ticket_id", flat=True))
        gone.delete()
        publish(tickets, "presence")


def refresh(tokens: Iterable[str]) -> None:
    """These pages are still open: one UPDATE for all of them."""
    tokens = list(tokens)
    if tokens:
        Presence.objects.filter(token__in=tokens).update(seen_at=timezone.now())
