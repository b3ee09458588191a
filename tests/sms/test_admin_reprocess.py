"""Failed inbound events are visible in Django's admin and can be handed back to the worker."""

from __future__ import annotations

import pytest
from django.test import Client

from smsdesk.desk.models import Ticket
from smsdesk.sms.models import InboundEvent
from smsdesk.sms.providers import InboundSms
from tests.conftest import drain

pytestmark = pytest.mark.django_db


def failed_event(sender: str, key: str) -> InboundEvent:
    InboundEvent.record(
        "messagebird", InboundSms(sender=sender, recipient="", text="hi", key=key), raw={}
    )
    event = InboundEvent.objects.get(key=key)
    event.error = "RuntimeError: outbox unavailable"
    event.save(update_fields=["error"])
    return event


def test_an_admin_sees_the_error_and_reprocesses_the_event(admin_client: Client) -> None:
    broken = failed_event("+31612345678", "m1")
    untouched = failed_event("+31687654321", "m2")
    listing = admin_client.get("/django-admin/sms/inboundevent/")
    assert "outbox unavailable" in listing.content.decode()
    response = admin_client.post(
        "/django-admin/sms/inboundevent/",
        {"action": "reprocess", "_selected_action": [broken.pk]},
        follow=True,
    )
    assert "Re-queued 1 event(s); the worker threads them" in response.content.decode()
    drain()
    assert Ticket.objects.get().contact.phone == "+31612345678"
    untouched.refresh_from_db()
    assert untouched.error and untouched.processed_at is None
