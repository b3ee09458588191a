"""/simulator: a phone in the browser for trying the desk without a provider."""

from __future__ import annotations

import random
import uuid
from urllib.parse import urlencode

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from smsdesk.lib.phone import InvalidNumber, normalise_sender
from smsdesk.sms.models import InboundEvent
from smsdesk.sms.providers import WebhookRejected
from smsdesk.sms.providers.messagebird import parse_fields

from .forms import SimulatorForm
from .models import Message

DEMO_RECIPIENT = "+3197010000000"


def require_simulator() -> None:
    if settings.SMSDESK_PROVIDER != "simulator":
        raise Http404("The simulator is only there while no SMS provider is configured.")


def phone(request: HttpRequest) -> HttpResponse:
    require_simulator()
    number = request.GET.get("phone") or request.session.get("simulator_phone") or random_number()
    try:
        number = normalise_sender(number, settings.SMSDESK_DEFAULT_REGION)
    except InvalidNumber:
        number = random_number()
    form = SimulatorForm(initial={"phone": number})
    return render(
        request,
        "desk/simulator.html",
        {"form": form, "phone": number, "thread": thread_for(number)},
    )


@require_POST
def send(request: HttpRequest) -> HttpResponse:
    require_simulator()
    form = SimulatorForm(request.POST)
    if not form.is_valid():
        return render(
            request, "desk/simulator.html", {"form": form, "phone": "", "thread": []}, status=400
        )
    # The same fields a MessageBird Flow Builder webhook carries, through the
    # same parser and journal: what works here works for a real number.
    fields = {
        "originator": form.cleaned_data["phone"],
        "recipient": DEMO_RECIPIENT,
        "payload": form.cleaned_data["text"],
        "message_id": f"sim-{uuid.uuid4().hex}",
        "currentTime": timezone.now().isoformat(),
    }
    try:
        sms = parse_fields(fields, settings.SMSDESK_DEFAULT_REGION)
    except WebhookRejected as exc:
        form.add_error(None, exc.reason)
        return render(
            request, "desk/simulator.html", {"form": form, "phone": "", "thread": []}, status=400
        )
    InboundEvent.record(
        "simulator", sms, {"method": "POST", "path": request.path, "fields": fields}
    )
    request.session["simulator_phone"] = sms.sender
    return redirect(reverse("simulator:phone") + "?" + urlencode({"phone": sms.sender}))


def thread_for(number: str) -> list[dict[str, object]]:
    """What this phone has sent and received, oldest first."""
    texts: list[dict[str, object]] = []
    for event in InboundEvent.objects.filter(sender=number).order_by("received_at", "id"):
        texts.append({"mine": True, "body": event.text, "at": event.received_at, "status": ""})
    outbound = Message.objects.filter(
        ticket__contact__phone=number,
        direction=Message.Direction.OUT,
        status__in=[Message.Status.SENT, Message.Status.DELIVERED],
    )
    for message in outbound:
        texts.append(
            {
                "mine": False,
                "body": message.body,
                "at": message.sent_at or message.created,
                "status": "",
            }
        )
    texts.sort(key=lambda text: text["at"])  # type: ignore[arg-type, return-value]
    return texts


def random_number() -> str:
    # Dutch mobile range, as in MessageBird's own examples.
    return f"+316{random.randint(10_000_000, 99_999_999)}"
