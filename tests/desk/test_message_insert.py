"""Messages stored without bulk_create: the same rows, ids and state as the ORM gives."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from smsdesk.desk import models
from smsdesk.desk.models import Contact, Message, Ticket, new_ref
from smsdesk.sms.models import InboundEvent

pytestmark = pytest.mark.django_db


def ticket() -> Ticket:
    contact = Contact.objects.create(phone="+31612345678", name="Ann")
    return Ticket.objects.create(ref=new_ref(), contact=contact)


def message(on: Ticket, **fields: object) -> Message:
    """A message with a value in every column, so that each column is compared."""
    now = timezone.now().replace(microsecond=123456)
    event = InboundEvent.objects.create(
        provider="messagebird", key=str(uuid.uuid4()), sender="+31612345678", text="hi", raw={}
    )
    values: dict[str, object] = {
        "ticket": on,
        "direction": Message.Direction.OUT,
        "body": "Wáár blijft mijn pakket? 📦 — één",
        "created": now,
        "author": get_user_model().objects.get_or_create(username="agent")[0],
        "event": event,
        "provider": "messagebird",
        "provider_message_id": "mb-1",
        "status": Message.Status.SENDING,
        "attempts": 3,
        "next_attempt_at": now + timedelta(minutes=5),
        "last_error": "timed out",
        "sent_at": now - timedelta(seconds=1),
        "status_at": now - timedelta(seconds=2),
        "status_reason": "delivery_failed",
        "status_error_code": "104",
        "purpose": "confirmation",
        "encoding": "unicode",
        "segments": 2,
    }
    values.update(fields)
    return Message(**values)


def stored(pk: int) -> tuple[object, ...]:
    """Every column of the row as the database holds it, but the id, uuid and event."""
    names = [
        field.column
        for field in Message._meta.concrete_fields
        if field.name not in {"id", "uuid", "event"}
    ]
    columns = ", ".join(connection.ops.quote_name(str(name)) for name in names)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM desk_message WHERE id = %s", [pk])
        row = cursor.fetchone()
    assert row is not None
    return tuple(row)


def test_the_columns_compared_are_every_column_of_a_message() -> None:
    filled = message(ticket())
    for field in Message._meta.concrete_fields:
        if not field.primary_key:
            assert getattr(filled, field.attname) not in (None, "", 0), field.name


def test_insert_all_stores_the_row_the_orm_would_store() -> None:
    on = ticket()
    by_orm, by_insert = message(on), message(on)

    Message.objects.bulk_create([by_orm])
    Message.insert_all([by_insert])

    assert by_insert.pk is not None and by_insert.pk != by_orm.pk
    assert stored(by_insert.pk) == stored(by_orm.pk)
    read = Message.objects.get(pk=by_insert.pk)
    assert read.uuid == by_insert.uuid
    assert read.event_id == by_insert.event_id
    assert (read.created, read.sent_at, read.body) == (
        by_insert.created,
        by_insert.sent_at,
        by_insert.body,
    )


def test_stored_messages_are_no_longer_new_and_save_as_updates() -> None:
    (inserted,) = Message.insert_all([message(ticket(), last_error="")])

    assert not inserted._state.adding
    inserted.last_error = "changed"
    inserted.save(update_fields=["last_error"])  # an UPDATE: it fails on an unsaved row
    assert Message.objects.get(pk=inserted.pk).last_error == "changed"


def test_each_message_gets_its_own_id_across_statements(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "INSERT_ROWS", 2)
    on = ticket()
    messages = Message.insert_all(message(on, body=f"text {n}", event=None) for n in range(5))

    assert len({m.pk for m in messages}) == 5
    for m in messages:
        assert Message.objects.get(pk=m.pk).body == m.body
