"""One ticket: its thread, reply, note, assignment, contact name, close and reopen."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from smsdesk.live.presence import viewers

from .forms import AssignForm, ContactForm, NoteForm, ReplyForm
from .models import Message, ReplyRefused, Ticket, TicketRead
from .templatetags.desk_thread import RESENDABLE, thread_rows
from .views import REF_SHAPE, get_ticket, render_page, signed_in

# The note box sits on the same page as the reply box: its own element ids.
NOTE_IDS = "note_%s"
FRAGMENTS = {
    "head": "desk/_ticket_head.html",
    "viewers": "desk/_viewers.html",
    "thread": "desk/_thread.html",
}


@login_required
def ticket(
    request: HttpRequest,
    ref: str,
    form: ReplyForm | None = None,
    note_form: NoteForm | None = None,
    status: int = 200,
) -> HttpResponse:
    me = signed_in(request)
    item = get_ticket(ref)
    thread = thread_rows(item.messages.all())
    newest = max((message.pk for message in thread), default=0)
    # Opening the page (or a live refresh of it) reads everything shown.
    TicketRead.mark(item, me)
    context = {
        "ticket": item,
        "thread": thread,
        "me": me,
        "form": form or ReplyForm(initial={"seen": newest}),
        "note_form": note_form or NoteForm(auto_id=NOTE_IDS),
        "assign_form": AssignForm(initial={"assignee": item.assignee_id}),
        "contact_form": ContactForm(initial={"name": item.contact.name}),
        "viewers": viewers(item.pk, me.pk),
        "siblings": list(
            Ticket.objects.filter(contact=item.contact_id, merged_into=None)
            .exclude(pk=item.pk)
            .order_by("-last_message_at")[:20]
        ),
    }
    return render_page(request, "desk/ticket.html", context, FRAGMENTS, status)


@login_required
@require_POST
def reply(request: HttpRequest, ref: str) -> HttpResponse:
    item = get_ticket(ref)
    me = signed_in(request)
    form = ReplyForm(request.POST)
    if not form.is_valid():
        return ticket(request, ref, form, status=400)
    data = form.cleaned_data
    collided = item.written_since(data["seen"] or 0, me) if not data["send_anyway"] else []
    if collided:
        return collision(request, item, collided)
    try:
        item.reply(data["body"], author=me)
    except ReplyRefused as exc:
        form.add_error("body", str(exc))
        return ticket(request, ref, form, status=400)
    TicketRead.mark(item, me)
    messages.success(request, "Reply queued.")
    return redirect("desk:ticket", ref=item.ref)


def collision(request: HttpRequest, item: Ticket, newer: list[Message]) -> HttpResponse:
    """Someone else replied after this agent's page loaded: show it, keep the draft."""
    names = sorted({message.author.get_username() for message in newer if message.author})
    who = " and ".join(names)
    data = request.POST.copy()
    data["send_anyway"] = "on"
    form = ReplyForm(data)
    form.is_valid()
    form.add_error(
        None,
        f"{who} replied since you opened this ticket. Read their reply, then send yours "
        "anyway or change it.",
    )
    return ticket(request, item.ref, form, status=409)


@login_required
@require_POST
def note(request: HttpRequest, ref: str) -> HttpResponse:
    item = get_ticket(ref)
    form = NoteForm(request.POST, auto_id=NOTE_IDS)
    if form.is_valid():
        try:
            item.add_note(form.cleaned_data["body"], author=signed_in(request))
        except ReplyRefused as exc:
            form.add_error("body", str(exc))
    if form.errors:
        return ticket(request, ref, note_form=form, status=400)
    messages.success(request, "Note added.")
    return redirect("desk:ticket", ref=item.ref)


@login_required
@require_POST
def assign(request: HttpRequest, ref: str) -> HttpResponse:
    item = get_ticket(ref)
    form = AssignForm(request.POST)
    if not form.is_valid():
        messages.error(request, "That agent does not exist (any more).")
        return redirect("desk:ticket", ref=item.ref)
    agent = form.cleaned_data["assignee"]
    item.assign(agent)
    if agent is None:
        messages.success(request, f"Ticket {item.ref} is unassigned.")
    elif agent.pk == signed_in(request).pk:
        messages.success(request, f"Ticket {item.ref} is yours.")
    else:
        messages.success(request, f"Ticket {item.ref} assigned to {agent.get_username()}.")
    return redirect("desk:ticket", ref=item.ref)


@login_required
@require_POST
def contact(request: HttpRequest, ref: str) -> HttpResponse:
    item = get_ticket(ref)
    form = ContactForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A name has at most 100 characters.")
        return redirect("desk:ticket", ref=item.ref)
    item.contact.rename(form.cleaned_data["name"])
    messages.success(request, "Name saved." if item.contact.name else "Name removed.")
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


@login_required
@require_POST
def split(request: HttpRequest, ref: str) -> HttpResponse:
    item = get_ticket(ref)
    message = posted_message(request, item)
    if message is None:
        messages.error(request, "That message is not in this ticket (any more).")
        return redirect("desk:ticket", ref=item.ref)
    try:
        new = item.split_off(message)
    except ReplyRefused as exc:
        messages.error(request, str(exc))
        return redirect("desk:ticket", ref=item.ref)
    messages.success(request, f"Message moved from {item.ref} to this new ticket.")
    return redirect("desk:ticket", ref=new.ref)


@login_required
@require_POST
def merge(request: HttpRequest, ref: str) -> HttpResponse:
    item = get_ticket(ref)
    target = request.POST.get("into", "")
    survivor = (
        Ticket.objects.filter(ref=target.upper()).first() if REF_SHAPE.fullmatch(target) else None
    )
    if survivor is None:
        messages.error(request, "Choose a ticket to merge into.")
        return redirect("desk:ticket", ref=item.ref)
    try:
        item.merge_into(survivor)
    except ReplyRefused as exc:
        messages.error(request, str(exc))
        return redirect("desk:ticket", ref=item.ref)
    messages.success(request, f"Ticket {item.ref} merged into this one.")
    return redirect("desk:ticket", ref=survivor.ref)


def posted_message(request: HttpRequest, item: Ticket, **filters: object) -> Message | None:
    """The ticket's message that the form names by its uuid (field `message`), if any."""
    try:
        chosen = uuid.UUID(request.POST.get("message", ""))
    except ValueError:
        return None
    return item.messages.filter(uuid=chosen, **filters).first()


@login_required
@require_POST
def resend(request: HttpRequest, ref: str) -> HttpResponse:
    """Queue a failed, expired or cancelled SMS again, as a new message from this agent."""
    item = get_ticket(ref)
    failed = posted_message(request, item, direction=Message.Direction.OUT, status__in=RESENDABLE)
    if failed is None:
        messages.error(
            request, "Only a failed, expired or cancelled SMS of this ticket can be resent."
        )
        return redirect("desk:ticket", ref=item.ref)
    try:
        item.reply(failed.body, author=signed_in(request))
    except ReplyRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Queued again.")
    return redirect("desk:ticket", ref=item.ref)
