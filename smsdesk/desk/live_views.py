"""The agent pages' live connection: Server-Sent Events at /admin/live."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from smsdesk.live import presence
from smsdesk.live import stream as live
from smsdesk.live.hub import Busy, hub

from .models import Ticket
from .views import REF_SHAPE, signed_in


def ticket_refs(ids: Sequence[int]) -> Mapping[int, str]:
    """What the browser knows tickets by: their refs."""
    return dict(Ticket.objects.filter(pk__in=ids).values_list("pk", "ref"))


def viewed_ticket(ref: str) -> tuple[int, str] | None:
    if not REF_SHAPE.fullmatch(ref):
        return None
    found = Ticket.objects.filter(ref=ref.upper()).values_list("pk", "ref").first()
    return (found[0], found[1]) if found else None


@login_required
def stream(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """Changes to tickets as they happen; with ?ticket=REF, to that ticket, and the agent
    shows as viewing it while connected."""
    me = signed_in(request)
    ticket = viewed_ticket(request.GET.get("ticket", ""))
    last_id = live.parse_last_id(
        request.headers.get("Last-Event-ID"), request.GET.get("last_event_id")
    )
    try:
        sub = hub.subscribe(ticket_refs, live.wanted_by(ticket), limit=live.max_streams())
    except Busy:
        # A short answer the browser retries later, as this process's
        # threads are for ordinary requests now.
        return event_stream(HttpResponse(live.busy()))
    try:
        missed = [] if last_id is None else live.replay(last_id, ticket_refs)
        token, joined = presence.join(me.pk, ticket[0]) if ticket else ("", 0)
    except BaseException:
        sub.close()
        raise
    if not token:
        return event_stream(StreamingHttpResponse(live.Stream(sub, missed)))
    hub.track(token)
    # The page has just rendered its viewers: its own arrival is news to the others only.
    page = live.Stream(sub, missed, ticket, lambda: hub.untrack(token), frozenset([joined]))
    return event_stream(StreamingHttpResponse(page))


def event_stream(
    response: HttpResponse | StreamingHttpResponse,
) -> HttpResponse | StreamingHttpResponse:
    response["Content-Type"] = "text/event-stream"
    response["Cache-Control"] = "no-cache, no-store"
    # Proxies such as nginx would otherwise hold the events back in a buffer.
    response["X-Accel-Buffering"] = "no"
    return response
