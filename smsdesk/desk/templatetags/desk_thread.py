"""The messages of a thread, rendered in Python.

A ticket page can hold hundreds of messages; the template language spent
about 0.18 ms on each (35 of a 200-message page's 41 CPU-ms), this code a
small fraction of that (docs/performance.md). The markup is the one
_thread.html had; every value goes through the standard library's html.escape(), which
escapes what Django's escape() does without its lazy-string wrapper.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from html import escape

from django import template
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from smsdesk.desk.models import Message

from .desk_time import message_time

register = template.Library()

RETRYING = "Retrying (attempt {attempts}): "


@register.simple_tag
def thread_items(thread: Iterable[Message]) -> SafeString:
    now = timezone.now()
    return mark_safe("".join(item(message, now) for message in thread))


def lines(text: str) -> str:
    """Django's linebreaksbr, escaping first."""
    return escape(text).replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


def item(m: Message, now: datetime) -> str:
    author = m.author.get_username() if m.author else ""
    parts = [
        f'<li class="msg {escape(m.direction)}" data-id="{m.pk}"',
        f' data-author="{escape(author)}">' if author else ">",
    ]
    if m.direction == Message.Direction.NOTE:
        parts.append('<p class="note-label">Internal note</p>')
    parts.append(f'<p class="body">{lines(m.body)}</p>')
    if m.direction == Message.Direction.IN:
        sender = "Customer"
    else:
        sender = escape(author) if author else "Automatic confirmation"
    parts.append(
        f'<p class="meta"><span class="from">{sender}</span> {message_time(m.created, now)}'
    )
    if m.direction == Message.Direction.OUT:
        label = escape(str(m.get_status_display()).capitalize())
        parts.append(f' <span class="status status-{escape(m.status)}">{label}</span>')
        if m.segments:
            parts.append(
                f' <span class="segments" title="{escape(m.encoding.upper())}">{m.segments} SMS</span>'
            )
    parts.append(
        f' <button type="submit" form="split" name="message" value="{m.uuid}" class="link"'
        ' title="Move this message into a new ticket">Split off</button></p>'
    )
    if m.direction == Message.Direction.OUT and m.last_error:
        final = m.status in (Message.Status.FAILED, Message.Status.CANCELLED)
        lead = "Not sent: " if final else RETRYING.format(attempts=m.attempts)
        parts.append(f'<p class="error">{lead}{escape(m.last_error)}</p>')
    parts.append("</li>")
    return "".join(parts)
