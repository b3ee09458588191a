"""The agent inbox at /admin: list, thread, reply, close, reopen."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from django.contrib import messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.decorators import login_required
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from .forms import ReplyForm
from .models import Message, ReplyRefused, Ticket

PAGE_SIZE = 25
REF_SHAPE = re.compile(r"[A-Za-z0-9]{1,12}")
STATUS_FILTERS = {
    "open": Q(status=Ticket.Status.OPEN),
    "closed": Q(status=Ticket.Status.CLOSED),
    "all": Q(),
}


def get_ticket(ref: str) -> Ticket:
    """The one way agent views fetch a ticket: by its public ref, 404 otherwise."""
    # Refs are short and alphanumeric; anything else (a NUL byte, a path)
    # never reaches the database.
    if not REF_SHAPE.fullmatch(ref):
        raise Http404("No such ticket.")
    return get_object_or_404(Ticket.objects.select_related("contact", "assignee"), ref=ref.upper())


def signed_in(request: HttpRequest) -> AbstractBaseUser:
    """The agent behind a @login_required view."""
    user = request.user
    assert isinstance(user, AbstractBaseUser), "only for views behind @login_required"
    return user


@login_required
def inbox(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "open")
    if status not in STATUS_FILTERS:
        status = "open"
    tickets = Ticket.objects.filter(STATUS_FILTERS[status]).select_related("contact", "assignee")
    cursor = parse_cursor(request.GET.get("after", ""))
    if cursor:
        at, pk = cursor
        # Spelled so that the first term bounds an index range on both
        # databases; the second only breaks ties at the boundary timestamp.
        # (With "< at OR (= at AND id <)" both walk the index from the first
        # page on: 20 ms more at 20,000 tickets deep.)
        tickets = tickets.filter(
            Q(last_message_at__lte=at), Q(last_message_at__lt=at) | Q(pk__lt=pk)
        )
    page = list(with_last_message(tickets.order_by("-last_message_at", "-id"))[: PAGE_SIZE + 1])
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    next_cursor = make_cursor(page[-1]) if more else ""
    return render(
        request,
        "desk/inbox.html",
        {"tickets": page, "status": status, "next_cursor": next_cursor, "paged": bool(cursor)},
    )


def with_last_message(tickets: QuerySet[Ticket]) -> QuerySet[Ticket]:
    # The preview is the conversation: notes and automatic texts (the
    # confirmation) would hide what the customer last said.
    latest = (
        Message.objects.filter(ticket=OuterRef("pk"))
        .exclude(direction=Message.Direction.NOTE)
        .exclude(direction=Message.Direction.OUT, author__isnull=True)
    )
    latest = latest.order_by("-created", "-id")
    return tickets.annotate(
        last_body=Subquery(latest.values("body")[:1]),
        last_direction=Subquery(latest.values("direction")[:1]),
    )


def make_cursor(ticket: Ticket) -> str:
    return f"{ticket.last_message_at.timestamp():.6f}_{ticket.pk}"


def parse_cursor(value: str) -> tuple[datetime, int] | None:
    """Keyset pagination: the page continues after (last_message_at, id)."""
    try:
        stamp, pk = value.split("_")
        return datetime.fromtimestamp(float(stamp), tz=UTC), int(pk)
    except (ValueError, OverflowError, OSError):
        return None


@login_required
def ticket(request: HttpRequest, ref: str, form: ReplyForm | None = None) -> HttpResponse:
    item = get_ticket(ref)
    thread = item.messages.select_related("author").order_by("created", "id")
    return render(
        request,
        "desk/ticket.html",
        {"ticket": item, "thread": thread, "form": form or ReplyForm()},
        status=400 if form is not None and form.errors else 200,
    )


@login_required
@require_POST
def reply(request: HttpRequest, ref: str) -> HttpResponse:
    item = get_ticket(ref)
    form = ReplyForm(request.POST)
    if not form.is_valid():
        return ticket(request, ref, form)
    try:
        item.reply(form.cleaned_data["body"], author=signed_in(request))
    except ReplyRefused as exc:
        form.add_error("body", str(exc))
        return ticket(request, ref, form)
    messages.success(request, "Reply queued.")
    return redirect("desk:ticket", ref=item.ref)


@login_required
@require_POST
def close(request: HttpRequest, ref: str) -> HttpResponse:
    item = get_ticket(ref)
    item.close()
    messages.success(request, f"Ticket {item.ref} closed.")
    return redirect("desk:ticket", ref=item.ref)


@login_required
@require_POST
def reopen(request: HttpRequest, ref: str) -> HttpResponse:
    item = get_ticket(ref)
    try:
        item.reopen()
    except ReplyRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Ticket {item.ref} reopened.")
    return redirect("desk:ticket", ref=item.ref)
