"""The messages of a thread, rendered in Python.

A ticket page can hold hundreds of messages; the template language spent
about 0.18 ms on each (35 of a 200-message page's 41 CPU-ms), this code a
small fraction of that (docs/performance.md). The markup is the one
_thread.html had; every value goes through the standard library's html.escape(), which
escapes what Django's escape() does without its lazy-string wrapper.

The rows are plain tuples (ThreadRow), not Message instances: building 200
model instances cost as much as rendering them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, tzinfo
from html import escape
from typing import NamedTuple
from uuid import UUID

from django import template
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from smsdesk.desk.models import Message

from .desk_time import time_tag

register = template.Library()

RETRYING = "Retrying (attempt {attempts}): "
RESENDABLE = (Message.Status.FAILED, Message.Status.EXPIRED, Message.Status.CANCELLED)
STATUS_LABELS = {value: str(label).capitalize() for value, label in Message.Status.choices}


class ThreadRow(NamedTuple):
    """What the thread shows of one message."""

    pk: int
    uuid: UUID
    direction: str
    body: str
    created: datetime
    author: str | None  # the agent's username
    status: str
    attempts: int
    last_error: str
    encoding: str
    segments: int | None
    status_reason: str
    status_error_code: str


# ThreadRow's fields, in order, as the query names them.
ROW_COLUMNS = (
    "pk",
    "uuid",
    "direction",
    "body",
    "created",
    "author__username",
    "status",
    "attempts",
    "last_error",
    "encoding",
    "segments",
    "status_reason",
    "status_error_code",
)


def thread_rows(messages: QuerySet[Message]) -> list[ThreadRow]:
    """The messages, oldest first, as the thread shows them."""
    rows = messages.order_by("created", "id").values_list(*ROW_COLUMNS)
    return [ThreadRow._make(row) for row in rows]


def trouble(m: ThreadRow) -> str:
    """What went wrong with an outbound SMS, in an agent's words; "" if nothing."""
    if m.status == Message.Status.EXPIRED:
        return (
            "Not delivered: their phone stayed off or out of reach until the carrier gave up."
            + (f" ({m.status_reason})" if m.status_reason else "")
        )
    if m.status == Message.Status.FAILED and not m.last_error:
        detail = ", ".join(
            filter(None, [m.status_reason, m.status_error_code and f"code {m.status_error_code}"])
        )
        return "Not delivered: the carrier could not deliver it" + (
            f" ({detail})." if detail else "."
        )
    if not m.last_error:
        return ""
    final = m.status in (Message.Status.FAILED, Message.Status.CANCELLED)
    return ("Not sent: " if final else RETRYING.format(attempts=m.attempts)) + m.last_error


@register.simple_tag
def thread_items(thread: Iterable[ThreadRow]) -> SafeString:
    now = timezone.now()
    zone = timezone.get_current_timezone()
    return mark_safe("".join(item(message, now, zone) for message in thread))


def lines(text: str) -> str:
    """Django's linebreaksbr, escaping first."""
    return escape(text).replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


def item(m: ThreadRow, now: datetime, zone: tzinfo) -> str:
    author = m.author or ""
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
        f'<p class="meta"><span class="from">{sender}</span> {time_tag(m.created, now, zone)}'
    )
    if m.direction == Message.Direction.OUT:
        label = escape(STATUS_LABELS.get(m.status, m.status.capitalize()))
        parts.append(f' <span class="status status-{escape(m.status)}">{label}</span>')
        if m.segments:
            parts.append(
                f' <span class="segments" title="{escape(m.encoding.upper())}">{m.segments} SMS</span>'
            )
    parts.append(
        f' <button type="submit" form="split" name="message" value="{m.uuid}" class="link"'
        ' title="Move this message into a new ticket">Split off</button></p>'
    )
    if m.direction == Message.Direction.OUT:
        problem = trouble(m)
        if problem:
            parts.append(f'<p class="error">{escape(problem)}')
            if m.status in RESENDABLE:
                parts.append(
                    f' <button type="submit" form="resend" name="message" value="{m.uuid}"'
                    ' class="link">Resend</button>'
                )
            parts.append("</p>")
    parts.append("</li>")
    return "".join(parts)
