"""Timestamps for pages that show hundreds of them.

Django's `date` filter parses its format string on every call; a ticket page
with 200 messages spent most of its render time there (docs/performance.md).
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from django import template
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

MONTHS = (
    "January February March April May June July August September October November December".split()
)


@register.filter
def message_time(value: datetime, now: datetime | None = None) -> SafeString:
    """`<time>` with the ISO instant and the full local time on hover.

    It reads "just now", "5 min ago" or "3 h ago" for the last day (desk.js
    keeps those current on an open page), then "24 Nov, 01:28".
    """
    return mark_safe(time_tag(value, now or timezone.now(), timezone.get_current_timezone()))


def time_tag(value: datetime, now: datetime, zone: tzinfo) -> str:
    """message_time for pages that show many: the caller looks up the time zone once.

    Looking it up and formatting with strftime for each of a ticket's 200
    messages was a third of its thread's rendering time.
    """
    at = value.astimezone(zone)
    month = MONTHS[at.month - 1]
    clock = f"{at.hour:02d}:{at.minute:02d}"
    ago = relative(value, now)
    text = ago or f"{at.day} {month[:3]}, {clock}"
    marker = " data-ago" if ago else ""
    # Only digits, fixed words and the ISO form: nothing to escape.
    return (
        f'<time datetime="{at.isoformat()}" title="{at.day} {month} {at.year}, {clock}:{at.second:02d}"'
        f"{marker}>{text}</time>"
    )


def relative(at: datetime, now: datetime) -> str | None:
    """ "5 min ago" for the last day; None for older or future times. desk.js has the same rules."""
    seconds = (now - at).total_seconds()
    if seconds < -60 or seconds >= 86400:
        return None
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    return f"{int(seconds // 3600)} h ago"
