"""MessageBird's delivery reports at /webhooks/messagebird/status.

Authenticated like the inbound webhook (signature or the secret URL token).
A receipt is applied at once with one conditional UPDATE (Message.apply_receipt):
unlike an inbound text there is nothing to thread, so no journal row. Unknown
messages and stale or repeated receipts answer 200 and change nothing, so the
provider does not retry them.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from smsdesk.sms.providers import WebhookRejected
from smsdesk.sms.views import ACCEPTED, Answer, admit, lean, messagebird, rejected

from .models import Message


def receive_status(request: HttpRequest, token: str | None = None) -> Answer:
    provider = messagebird()
    try:
        admit(request, provider, token)
        receipt = provider.parse_status(request)
    except WebhookRejected as exc:
        return rejected(request, token, exc)
    Message.apply_receipt(receipt)
    return ACCEPTED


@lean
@csrf_exempt
def messagebird_status(request: HttpRequest, token: str | None = None) -> HttpResponse:
    return receive_status(request, token).response()
