"""The SSE view: signed-in agents only, what they missed, then changes as the worker makes them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from smsdesk.desk.models import Contact, Ticket, new_ref
from smsdesk.live import stream
from smsdesk.live.events import publish
from smsdesk.live.models import Event, Presence
from smsdesk.live.presence import viewers
from smsdesk.sms.models import InboundEvent
from smsdesk.sms.providers import InboundSms
from tests.conftest import drain

from .conftest import WAIT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("short_streams")]

Message = dict[str, str]


def make_ticket(phone: str = "+31612345678") -> Ticket:
    return Ticket.objects.create(ref=new_ref(), contact=Contact.objects.create(phone=phone))


def text_the_desk(sender: str, body: str) -> None:
    InboundEvent.record(
        "messagebird",
        InboundSms(sender=sender, recipient="", text=body, key=f"{sender}-{body}"),
        raw={},
    )


def parse(chunks: Iterator[bytes]) -> Iterator[Message]:
    """SSE messages (field → value) as they arrive; comments become {"comment": …}."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            message: Message = {}
            for line in block.decode().splitlines():
                name, _, value = line.partition(":")
                message[name or "comment"] = value.strip()
            yield message


OPEN: list[Any] = []  # responses of the current test, closed after it


@pytest.fixture(autouse=True)
def close_streams() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def open_stream(client: Client, path: str = "/admin/live", **headers: str) -> Iterator[Message]:
    response = client.get(path, headers=headers)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    OPEN.append(response)
    return parse(response.streaming_content)  # type: ignore[attr-defined]


def until(messages: Iterator[Message], event: str) -> Message:
    for message in messages:
        if message.get("event") == event:
            return message
    raise AssertionError(f"the stream ended without a {event!r} event")


def test_it_needs_a_signed_in_agent(client: Client) -> None:
    response = client.get("/admin/live")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_a_text_threaded_by_the_worker_reaches_a_connected_inbox(agent_client: Client) -> None:
    messages = open_stream(agent_client)
    opening = next(messages)
    assert opening.get("retry") == str(stream.RETRY_MS)

    text_the_desk("+31611111111", "Where is my parcel?")
    drain()

    change = until(messages, "change")
    ticket = Ticket.objects.get(contact__phone="+31611111111")
    assert json.loads(change["data"]) == {"tickets": [ticket.ref], "kind": "message"}
    assert int(change["id"]) == Event.objects.get(kind="message").pk


def test_a_reconnecting_browser_gets_what_it_missed_in_order(agent_client: Client) -> None:
    first, second = make_ticket("+31600000001"), make_ticket("+31600000002")
    publish([first.pk], "before")
    seen = Event.objects.get().pk
    second.close()
    first.close()
    publish([second.pk], "note")

    messages = open_stream(agent_client, **{"Last-Event-ID": str(seen)})
    got = [json.loads(until(messages, "change")["data"]) for _ in range(3)]

    assert got == [
        {"tickets": [second.ref], "kind": "ticket"},
        {"tickets": [first.ref], "kind": "ticket"},
        {"tickets": [second.ref], "kind": "note"},
    ]


def test_the_query_string_stands_in_for_the_header_on_a_first_connection(
    agent_client: Client,
) -> None:
    ticket = make_ticket()
    publish([ticket.pk], "before")
    seen = Event.objects.get().pk
    ticket.close()
    messages = open_stream(agent_client, f"/admin/live?last_event_id={seen}")
    assert json.loads(until(messages, "change")["data"])["kind"] == "ticket"


@pytest.mark.parametrize("gap", ["pruned", "other database"])
def test_a_browser_that_missed_too_much_is_told_to_reset(agent_client: Client, gap: str) -> None:
    ticket = make_ticket()
    for _ in range(3):
        ticket.close()
    newest = Event.objects.order_by("id").last()
    assert newest is not None
    if gap == "pruned":
        Event.objects.exclude(pk=newest.pk).delete()
        last = newest.pk - 2
    else:
        last = newest.pk + 1000
    messages = open_stream(agent_client, **{"Last-Event-ID": str(last)})
    reset = next(m for m in messages if m.get("event") in ("reset", "change"))
    assert reset["event"] == "reset"
    assert reset["id"] == str(newest.pk)


def test_a_browser_that_missed_more_than_the_replay_limit_is_told_to_reset(
    agent_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "REPLAY_MAX", 2)
    ticket = make_ticket()
    publish([ticket.pk], "before")
    seen = Event.objects.get().pk
    for _ in range(3):
        ticket.close()
    messages = open_stream(agent_client, **{"Last-Event-ID": str(seen)})
    assert next(m for m in messages if "event" in m)["event"] == "reset"


def test_a_ticket_page_hears_of_its_ticket_only(agent_client: Client) -> None:
    mine, other = make_ticket("+31600000001"), make_ticket("+31600000002")
    messages = open_stream(agent_client, f"/admin/live?ticket={mine.ref.lower()}")
    other.close()
    mine.close()
    change = until(messages, "change")
    assert json.loads(change["data"]) == {"tickets": [mine.ref], "kind": "ticket"}


def test_the_heartbeat_carries_the_current_id(
    agent_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "HEARTBEAT", 0.2)
    mine, other = make_ticket("+31600000001"), make_ticket("+31600000002")
    messages = open_stream(agent_client, f"/admin/live?ticket={mine.ref}")
    next(messages)  # retry
    assert next(messages)["comment"] == "ping"
    other.close()  # not this page's ticket: no event for it, but a newer id
    newest = str(Event.objects.latest("id").pk)
    ping = next(m for m in messages if m.get("id") == newest)
    assert ping == {"comment": "ping", "id": newest}


def test_an_agent_on_a_ticket_page_shows_as_viewing_it_until_the_page_closes(
    agent_client: Client, agent
) -> None:  # type: ignore[no-untyped-def]
    ticket = make_ticket()
    colleague = get_user_model().objects.create_user("colleague")
    watcher = Client()
    watcher.force_login(colleague)
    watching = open_stream(watcher, f"/admin/live?ticket={ticket.ref}")
    next(watching)

    response = agent_client.get(f"/admin/live?ticket={ticket.ref}")
    viewing = parse(response.streaming_content)  # type: ignore[attr-defined]
    next(viewing)
    assert viewers(ticket.pk, exclude_agent_id=colleague.pk) == ["agent"]
    assert viewers(ticket.pk, exclude_agent_id=agent.pk) == ["colleague"]
    assert json.loads(until(watching, "change")["data"])["kind"] == "presence"

    response.close()  # the page closed
    assert json.loads(until(watching, "change")["data"]) == {
        "tickets": [ticket.ref],
        "kind": "presence",
    }
    assert viewers(ticket.pk, exclude_agent_id=colleague.pk) == []
    assert list(Presence.objects.values_list("agent__username", flat=True)) == ["colleague"]


def test_a_process_at_its_stream_limit_asks_the_browser_to_come_back_later(
    agent_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMSDESK_LIVE_MAX_STREAMS", "1")
    open_stream(agent_client)
    response = agent_client.get("/admin/live")
    assert response["Content-Type"] == "text/event-stream"
    assert re.match(rb"retry: \d+\n", response.content)


def test_a_stream_ends_after_its_lifetime(
    agent_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "LIFETIME", 0.3)
    messages = list(open_stream(agent_client))
    assert messages[0]["retry"] == str(stream.RETRY_MS)


def test_a_stream_holds_no_database_connection_while_it_waits(agent_client: Client) -> None:
    from django.db import connection

    messages = open_stream(agent_client)
    next(messages)
    assert connection.connection is None
    assert WAIT
