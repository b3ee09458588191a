"""Publishing "ticket changed" events (placeholder: the live app fills this in)."""

from __future__ import annotations

from collections.abc import Iterable


def publish(ticket_ids: Iterable[int], kind: str) -> None:
    """Tell connected inboxes that these tickets changed; call inside the changing transaction."""
