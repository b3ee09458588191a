"""{% live_cursor %}: the newest event id, for a page to start its live connection from."""

from __future__ import annotations

from django import template

from smsdesk.live.models import Event

register = template.Library()


@register.simple_tag
def live_cursor() -> int:
    """Put it in the page (data-live-after) so that live.js is sent every change made
    between this render and its connection, which a fresh EventSource cannot ask for."""
    return Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
