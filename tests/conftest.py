"""Shared test fixtures. Tests run on whichever database DATABASE_URL names."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from smsdesk.desk import worker


@pytest.fixture(autouse=True)
def demo_settings(settings: object) -> Iterator[None]:
    """Every test starts in demo mode with the simulator, whatever the shell has set.

    The API URL points at a closed local port, so a test that forgets to
    start the fake MessageBird server fails fast instead of leaving the machine.
    """
    settings.PRODUCTION = False  # type: ignore[attr-defined]
    settings.SMSDESK_ENV = "demo"  # type: ignore[attr-defined]
    settings.SMSDESK_PROVIDER = "simulator"  # type: ignore[attr-defined]
    settings.MESSAGEBIRD_ACCESS_KEY = ""  # type: ignore[attr-defined]
    settings.MESSAGEBIRD_ORIGINATOR = ""  # type: ignore[attr-defined]
    settings.MESSAGEBIRD_SIGNING_KEY = ""  # type: ignore[attr-defined]
    settings.MESSAGEBIRD_API_URL = "http://127.0.0.1:9"  # type: ignore[attr-defined]
    settings.SMSDESK_WEBHOOK_TOKEN = ""  # type: ignore[attr-defined]
    settings.SMSDESK_PUBLIC_URL = ""  # type: ignore[attr-defined]
    settings.SMSDESK_DEFAULT_REGION = None  # type: ignore[attr-defined]
    # A deliberately slow password hash has no place in tests.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # type: ignore[attr-defined]
    yield


@pytest.fixture(autouse=True)
def live_hub_stopped() -> Iterator[None]:
    """A page's live connection starts this process's hub; each test ends with it stopped.

    Left running, its database connection keeps PostgreSQL from dropping the test database.
    """
    yield
    from smsdesk.live.hub import hub

    hub.stop()


@pytest.fixture(autouse=True)
def journal_closed() -> Iterator[None]:
    """The journal's own connection (smsdesk.sms.journal) is closed after each test.

    Left open, it too keeps PostgreSQL from dropping the test database.
    """
    yield
    from smsdesk.sms.models import journal

    journal.close()


@pytest.fixture
def agent(db: None):  # type: ignore[no-untyped-def]
    return get_user_model().objects.create_user("agent", password="correct horse battery")


@pytest.fixture
def agent_client(client, agent):  # type: ignore[no-untyped-def]
    client.force_login(agent)
    return client


@pytest.fixture
def sent(db: None):  # type: ignore[no-untyped-def]
    """An agent's reply, sent by the worker: what delivery receipts are about."""
    from smsdesk.desk.models import Contact, Message, Ticket

    contact = Contact.objects.create(phone="+31612345678")
    message = Ticket.objects.create(ref="K7F3QX", contact=contact).reply(
        "Your parcel is on its way", author=None
    )
    drain()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    return message


def on_postgres() -> bool:
    return connection.vendor == "postgresql"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return
    skip = pytest.mark.skip(
        reason="needs PostgreSQL's parallel transactions; runs in the PostgreSQL pass"
    )
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


def drain() -> int:
    """Run the worker until it finds nothing to do; return how many items it handled."""
    total = 0
    while done := worker.run_once():
        total += done
    return total
