"""Timestamps for pages that show hundreds of them.

Django's `date` filter parses its format string on every call; a ticket page
with 200 messages spent most of its render time there (docs/performance.md).
"""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

MONTHS = (
    "January February March April May June July August September October November December".split()
)


@register.filter
def message_time(value: datetime) -> SafeString:
    """`<time>` with the ISO instant, the full local time on hover and "24 Nov, 01:28"."""
    at = timezone.localtime(value)
    month = MONTHS[at.month - 1]
    # Only digits, fixed month names and the ISO form: nothing to escape.
    return mark_safe(
        f'<time datetime="{at.isoformat()}" title="{at.day} {month} {at.year}, {at:%H:%M:%S}">'
        f"{at.day} {month[:3]}, {at:%H:%M}</time>"
    )
