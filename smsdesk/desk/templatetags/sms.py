"""The SMS tables (smsdesk.lib.segments) for the reply box's composer script."""

from __future__ import annotations

from functools import cache

from django import template
from django.utils.html import json_script
from django.utils.safestring import SafeString

from smsdesk.lib import segments

register = template.Library()


@register.simple_tag
def sms_tables() -> SafeString:
    """`<script type="application/json" id="sms-tables">` with segments.tables()."""
    return tables_script()


@cache
def tables_script() -> SafeString:
    # The tables never change while the process runs, and serialising the
    # 270 look-alikes costs about a millisecond a page.
    return json_script(segments.tables(), "sms-tables")
