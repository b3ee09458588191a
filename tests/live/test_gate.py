"""The request gate of `smsdesk serve`: a few requests at a time, a connection per slot."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from django.db import connections
from django.test import RequestFactory

from smsdesk.live import gate
from smsdesk.sms.models import InboundEvent

WAIT = 20.0
FORM = "application/x-www-form-urlencoded"


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    start_response.status = status  # type: ignore[attr-defined]


class Streaming:
    """A response that streams, as Django's StreamingHttpResponse does."""

    streaming = True

    def __init__(self, during: list[int]) -> None:
        self.during = during

    def __iter__(self) -> Iterator[bytes]:
        self.during.append(len(gate.slots.free))  # how many slots are free while it streams
        yield b"data"


def test_requests_share_the_slots_connections_whatever_thread_runs_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gate, "slots", gate.Slots(2))
    lock = threading.Lock()
    inside, most, wrappers = [0], [0], set()

    def desk(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            wrappers.add(id(connections["default"]))
        threading.Event().wait(0.001)
        with lock:
            inside[0] -= 1
        return [b"ok"]

    monkeypatch.setattr(gate, "desk", desk)

    def requests() -> None:
        for _ in range(20):
            assert gate.application({}, start_response) == [b"ok"]

    threads = [threading.Thread(target=requests) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    assert most[0] <= 2
    assert len(wrappers) == 2, "ten threads, two slots: two database connections"


def test_a_streaming_response_is_sent_after_its_slot_is_free(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gate, "slots", gate.Slots(1))
    during: list[int] = []
    monkeypatch.setattr(gate, "desk", lambda environ, start_response: Streaming(during))
    assert list(gate.application({}, start_response)) == [b"data"]
    assert during == [1]


def test_the_thread_keeps_no_slot_connection_after_a_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gate, "slots", gate.Slots(1))
    seen = []

    def desk(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(connections["default"])
        return [b"ok"]

    monkeypatch.setattr(gate, "desk", desk)
    gate.application({}, start_response)
    (slot,) = gate.slots.free
    assert seen == [slot.wrappers["default"]]
    assert connections["default"] is not slot.wrappers["default"]


def wait_until(condition: Any) -> None:
    for _ in range(int(WAIT / 0.001)):
        if condition():
            return
        threading.Event().wait(0.001)
    raise AssertionError("timed out")


def test_a_slot_given_back_goes_to_the_longest_waiter_not_a_newcomer() -> None:
    slots = gate.Slots(1)
    order: list[str] = []
    first = slots.take()

    def request(name: str) -> None:
        slot = slots.take()
        order.append(name)
        slots.give(slot)

    early = threading.Thread(target=request, args=("early",))
    early.start()
    wait_until(lambda: len(slots.waiting) == 1)
    late = threading.Thread(target=request, args=("late",))
    late.start()
    wait_until(lambda: len(slots.waiting) == 2)
    slots.give(first)
    # A newcomer arriving as the slot is given back queues behind both.
    request("newcomer")
    early.join(WAIT)
    late.join(WAIT)
    assert order == ["early", "late", "newcomer"]
    assert slots.free == [first] and not slots.waiting


@pytest.mark.django_db
def test_the_desk_answers_through_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    slots = gate.Slots(1)
    monkeypatch.setattr(gate, "slots", slots)
    environ = RequestFactory().get("/login/").environ
    try:
        body = gate.application(environ, start_response)
    finally:
        for slot in slots.free:
            for wrapper in slot.wrappers.values():
                wrapper.close()
    assert start_response.status == "200 OK"  # type: ignore[attr-defined]
    assert b"Sign in" in b"".join(body)


@pytest.mark.django_db(transaction=True)
def test_a_webhook_is_answered_and_stored_while_every_slot_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slots = gate.Slots(1)
    monkeypatch.setattr(gate, "slots", slots)
    form = {"originator": "+31612345678", "payload": "Where is my parcel?", "message_id": "m1"}
    environ = RequestFactory().post("/webhook", urlencode(form), content_type=FORM).environ
    answered: list[bytes] = []
    held = slots.take()  # an agent's page, say, holds the only slot
    try:
        webhook = threading.Thread(
            target=lambda: answered.extend(gate.application(environ, start_response))
        )
        webhook.start()
        webhook.join(WAIT)
        assert not webhook.is_alive(), "the webhook waited for a request slot"
    finally:
        slots.give(held)

    assert start_response.status == "200 OK"  # type: ignore[attr-defined]
    assert answered == [b"OK"]
    assert InboundEvent.objects.filter(key="m1", text="Where is my parcel?").exists()
    assert held.wrappers == {}, "the webhook used no slot's connection"
