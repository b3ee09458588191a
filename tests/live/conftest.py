"""Live-update fixtures: a hub stopped after every test, streams that end quickly."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from smsdesk.live import stream
from smsdesk.live.hub import Batch, Change, Subscription, hub

WAIT = 20.0  # seconds; a bound on every wait, never a pass/fail threshold


@pytest.fixture(autouse=True)
def stopped_hub() -> Iterator[None]:
    """The hub thread holds a database connection: it must end before the database does."""
    yield
    hub.stop()


@pytest.fixture
def short_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streams that end on their own within seconds, so a failing test cannot hang."""
    monkeypatch.setattr(stream, "LIFETIME", 5.0)


def resolve(ids: object) -> dict[int, str]:
    """Ticket ids → refs without the desk: every id is its own ref."""
    return {pk: f"T{pk}" for pk in ids}  # type: ignore[attr-defined]


def next_changes(sub: Subscription, wait: float = WAIT) -> list[Change]:
    """The next changes the hub hands this subscription (empty if none come in `wait` s)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        batch: Batch = sub.wait(deadline - time.monotonic())
        if batch.changes or batch.closed or batch.behind:
            return batch.changes
    return []
