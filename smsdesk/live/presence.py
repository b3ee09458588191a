"""Who is looking at a ticket (placeholder: the live app fills this in)."""

from __future__ import annotations


def viewers(ticket_id: int, exclude_agent_id: int) -> list[str]:
    """Usernames of the other agents who have the ticket open now."""
    return []
