"""Delivery receipts move an outbound message forward only, whatever order they come in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from smsdesk.desk.models import DeliveryReceipt, Message
from tests.conftest import drain

pytestmark = pytest.mark.django_db

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def receipt(message: Message, status: str, minutes: int = 0, **fields: str) -> int:
    return Message.apply_receipt(
        DeliveryReceipt(
            status=status,
            reference=str(message.uuid),
            provider_message_id=message.provider_message_id,
            at=AT + timedelta(minutes=minutes),
            **fields,
        )
    )


def status(message: Message) -> tuple[str, datetime | None]:
    message.refresh_from_db()
    return message.status, message.status_at


def test_receipts_in_order_move_the_message_along(sent: Message) -> None:
    assert receipt(sent, "buffered", 1) == 1
    assert status(sent) == ("buffered", AT + timedelta(minutes=1))
    assert receipt(sent, "delivered", 2, reason="successfully delivered") == 1
    assert status(sent) == ("delivered", AT + timedelta(minutes=2))
    assert sent.status_reason == "successfully delivered"


def test_an_older_receipt_after_a_newer_one_changes_nothing(sent: Message) -> None:
    assert receipt(sent, "delivered", 2) == 1
    assert receipt(sent, "buffered", 1) == 0
    assert receipt(sent, "sent", 0) == 0
    assert status(sent) == ("delivered", AT + timedelta(minutes=2))


def test_a_repeated_receipt_changes_nothing(sent: Message) -> None:
    assert receipt(sent, "buffered", 1) == 1
    assert receipt(sent, "buffered", 1) == 0
    assert Message.objects.filter(direction="out").count() == 1


@pytest.mark.parametrize("final", ["delivered", "failed", "expired"])
def test_final_statuses_stay_final(sent: Message, final: str) -> None:
    assert receipt(sent, final, 5, reason="why", error_code="104") == 1
    for later in ("sent", "buffered", "delivered", "failed", "expired"):
        receipt(sent, later, 9)
    assert status(sent) == (final, AT + timedelta(minutes=5))
    assert (sent.status_reason, sent.status_error_code) == ("why", "104")


def test_an_unknown_reference_changes_nothing(sent: Message) -> None:
    unknown = DeliveryReceipt(
        status="delivered", reference="not-a-uuid", provider_message_id="nope"
    )
    assert Message.apply_receipt(unknown) == 0
    assert status(sent)[0] == "sent"


def test_the_providers_id_alone_finds_the_message(sent: Message) -> None:
    by_id = DeliveryReceipt(
        status="delivered", reference="", provider_message_id=sent.provider_message_id
    )
    assert Message.apply_receipt(by_id) == 1
    assert status(sent)[0] == "delivered"


def test_a_receipt_for_a_message_awaiting_a_retry_calls_the_retry_off(sent: Message) -> None:
    # The provider took it but its answer was lost (a timeout): a retry is scheduled.
    Message.objects.filter(pk=sent.pk).update(status="queued", next_attempt_at=AT)
    assert receipt(sent, "delivered") == 1
    sent.refresh_from_db()
    assert (sent.status, sent.next_attempt_at) == ("delivered", None)
    assert drain() == 0  # nothing resent


def test_a_receipt_that_beats_the_providers_answer_keeps_its_status(sent: Message) -> None:
    Message.objects.filter(pk=sent.pk).update(status="sending", provider_message_id="")
    sent.refresh_from_db()
    assert receipt(sent, "delivered") == 1
    Message.mark_all_sent("simulator", [(sent, "mb-123")])
    sent.refresh_from_db()
    assert (sent.status, sent.provider_message_id) == ("delivered", "mb-123")


def test_inbound_messages_and_notes_take_no_receipts(sent: Message) -> None:
    inbound = Message.objects.create(ticket=sent.ticket, direction="in", body="Thanks")
    r = DeliveryReceipt(status="delivered", reference=str(inbound.uuid))
    assert Message.apply_receipt(r) == 0


def test_the_ticket_page_explains_a_failed_delivery_and_offers_resend(
    sent: Message, agent_client
) -> None:  # type: ignore[no-untyped-def]
    receipt(sent, "failed", reason="unknown subscriber", error_code="1")
    page = agent_client.get("/admin/tickets/K7F3QX").content.decode()
    assert "Not delivered: the carrier could not deliver it (unknown subscriber, code 1)." in page
    assert f'form="resend" name="message" value="{sent.uuid}"' in page
    response = agent_client.post("/admin/tickets/K7F3QX/resend", {"message": str(sent.uuid)})
    assert response.status_code == 302
    again = Message.objects.filter(direction="out").exclude(pk=sent.pk).get()
    assert (again.body, again.status) == (sent.body, "queued")
    drain()
    again.refresh_from_db()
    assert again.status == "sent"


def test_an_expired_sms_is_explained_in_plain_words(sent: Message, agent_client) -> None:  # type: ignore[no-untyped-def]
    receipt(sent, "expired")
    page = agent_client.get("/admin/tickets/K7F3QX").content.decode()
    assert "their phone stayed off or out of reach" in page


def test_only_a_failed_sms_can_be_resent(sent: Message, agent_client) -> None:  # type: ignore[no-untyped-def]
    response = agent_client.post(
        "/admin/tickets/K7F3QX/resend", {"message": str(sent.uuid)}, follow=True
    )
    assert "can be resent" in response.content.decode()
    assert Message.objects.filter(direction="out").count() == 1
    assert agent_client.post("/admin/tickets/K7F3QX/resend", {"message": "x"}).status_code == 302
