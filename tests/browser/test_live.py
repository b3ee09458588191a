"""Live updates in a real browser: texts appear in an open inbox and ticket page, no reload."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Browser, Page, expect
from pytest_django.live_server_helper import LiveServer

from smsdesk.desk.models import Ticket
from smsdesk.live import stream
from smsdesk.live.hub import hub
from tests.browser.conftest import new_page, screenshot
from tests.conftest import drain

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CUSTOMER = "+31612345678"
PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def live_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Closed pages are noticed at the next heartbeat: make that soon.
    monkeypatch.setattr(stream, "HEARTBEAT", 0.5)
    yield
    hub.stop()  # ends every stream, and the hub's database connection


def text_the_desk(base_url: str, sender: str, text: str) -> None:
    fields = {"originator": sender, "recipient": "+3197010000000", "payload": text}
    response = httpx.post(f"{base_url}/webhook", data={**fields, "message_id": uuid.uuid4().hex})
    assert (response.status_code, response.text) == (200, "OK")


def signed_in_page(browser: Browser, base_url: str, username: str) -> Page:
    get_user_model().objects.create_user(username, password=PASSWORD)
    page = new_page(browser)
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base_url}/admin/")
    return page


def connected(page: Page) -> None:
    """The page's live connection is open: what happens from now on reaches it."""
    expect(page.locator("main[data-live=open]")).to_have_count(1)
    # A mark on this window survives live updates but not a reload or navigation.
    page.evaluate("window.stillTheSamePage = true")


def test_texts_appear_in_an_open_inbox_and_ticket_page_without_a_reload(
    browser: Browser, live_server: LiveServer
) -> None:
    base = live_server.url
    page = signed_in_page(browser, base, "agent")
    connected(page)

    text_the_desk(base, CUSTOMER, "My parcel was due yesterday and has not arrived.")
    drain()
    ticket = Ticket.objects.get(contact__phone=CUSTOMER)
    row = page.get_by_role("link", name=re.compile(ticket.ref))
    expect(row).to_contain_text("has not arrived")
    assert page.evaluate("window.stillTheSamePage") is True

    row.click()
    expect(page).to_have_url(f"{base}/admin/tickets/{ticket.ref}")
    connected(page)
    reply = page.get_by_role("textbox", name=re.compile("^Reply"))
    reply.fill("Sorry about that, let me check")
    text_the_desk(base, CUSTOMER, "It is order 1182, by the way.")
    drain()
    thread = page.get_by_role("list", name="Conversation")
    expect(thread).to_contain_text("It is order 1182, by the way.")
    expect(reply).to_have_value("Sorry about that, let me check")
    assert page.evaluate("window.stillTheSamePage") is True
    screenshot(page, "ticket-live.png")
    page.context.close()


def test_a_ticket_page_shows_which_other_agents_are_viewing_it(
    browser: Browser, live_server: LiveServer
) -> None:
    base = live_server.url
    text_the_desk(base, CUSTOMER, "Can I change my delivery address?")
    drain()
    ticket = Ticket.objects.get(contact__phone=CUSTOMER)
    page = signed_in_page(browser, base, "agent")
    page.goto(f"{base}/admin/tickets/{ticket.ref}")
    connected(page)
    viewers = page.locator("[data-live-fragment=viewers]")
    expect(viewers).not_to_contain_text("colleague")

    colleague = signed_in_page(browser, base, "colleague")
    colleague.goto(f"{base}/admin/tickets/{ticket.ref}")
    connected(colleague)
    expect(viewers).to_contain_text("colleague")
    expect(colleague.locator("[data-live-fragment=viewers]")).to_contain_text("agent")
    screenshot(page, "ticket-viewers.png")

    colleague.context.close()
    expect(viewers).not_to_contain_text("colleague")
    assert page.evaluate("window.stillTheSamePage") is True
    page.context.close()
