"""An agent works a ticket in a real browser; a customer texts from the simulator."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Browser, Page, expect
from pytest_django.live_server_helper import LiveServer

from smsdesk.desk.models import Message, Ticket
from tests.browser.conftest import new_page, screenshot
from tests.conftest import drain

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CUSTOMER = "+31612345678"
PASSWORD = "correct horse battery"


def text_the_desk(base_url: str, sender: str, text: str) -> None:
    """An inbound SMS through the real webhook, as MessageBird's Flow Builder posts it."""
    fields = {
        "originator": sender,
        "recipient": "+3197010000000",
        "payload": text,
        "message_id": uuid.uuid4().hex,
    }
    response = httpx.post(f"{base_url}/webhook", data=fields, timeout=10)
    assert (response.status_code, response.text) == (200, "OK")


def sign_in(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/admin")
    expect(page).to_have_url(re.compile(r"/login/\?next=/admin/$"))
    page.get_by_label("Username").fill("agent")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base_url}/admin/")


def test_an_agent_signs_in_answers_closes_and_reopens_a_ticket(
    browser: Browser, live_server: LiveServer
) -> None:
    base = live_server.url
    agent = get_user_model().objects.create_user("agent", password=PASSWORD)
    text_the_desk(base, "+31687654321", "Can I change the delivery address for order 1182?")
    text_the_desk(base, "+447700900123", "Hi, the app keeps logging me out since the update.")
    text_the_desk(base, CUSTOMER, "My parcel was due yesterday and has not arrived.")
    drain()
    ticket = Ticket.objects.get(contact__phone=CUSTOMER)

    # No JavaScript at all: every agent action is a plain server-rendered form.
    page = new_page(browser, java_script_enabled=False)
    page.goto(f"{base}/admin")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screenshot(page, "login.png")
    sign_in(page, base)
    row = page.get_by_role("link", name=re.compile(ticket.ref))
    expect(row).to_contain_text(CUSTOMER)
    screenshot(page, "inbox.png")

    phone = new_page(browser, width=390, height=844, storage_state=page.context.storage_state())
    phone.goto(f"{base}/admin/")
    expect(phone.get_by_role("link", name=re.compile(ticket.ref))).to_be_visible()
    screenshot(phone, "inbox-phone.png")
    phone.context.close()

    row.click()
    expect(page).to_have_url(f"{base}/admin/tickets/{ticket.ref}")
    thread = page.get_by_role("list", name="Conversation")
    expect(thread).to_contain_text("My parcel was due yesterday and has not arrived.")
    expect(thread).to_contain_text(f"Your ticket ID is {ticket.ref}.")

    reply_text = "Sorry about that! The courier has it and will deliver it tomorrow morning."
    page.get_by_role("textbox", name=re.compile("^Reply")).fill(reply_text)
    page.get_by_role("button", name="Send reply").click()
    expect(page.get_by_role("status")).to_contain_text("Reply queued.")
    reply = thread.get_by_role("listitem").filter(has_text=reply_text)
    expect(reply).to_contain_text(re.compile("queued", re.IGNORECASE))

    drain()
    page.reload()
    expect(reply).to_contain_text(re.compile("sent", re.IGNORECASE))
    sent = Message.objects.get(ticket=ticket, body=reply_text)
    assert (sent.direction, sent.author, sent.status) == ("out", agent, "sent")
    screenshot(page, "ticket.png")

    page.get_by_role("button", name="Close ticket").click()
    expect(page.get_by_role("status")).to_contain_text(f"Ticket {ticket.ref} closed.")
    ticket.refresh_from_db()
    assert ticket.status == "closed"
    page.get_by_role("button", name="Reopen ticket").click()
    expect(page.get_by_role("status")).to_contain_text(f"Ticket {ticket.ref} reopened.")
    ticket.refresh_from_db()
    assert ticket.status == "open"

    # Spaces pass the browser's own "required" check; the server must refuse them.
    page.get_by_role("textbox", name=re.compile("^Reply")).fill("   ")
    with page.expect_response(re.compile(r"/reply$")) as answer:
        page.get_by_role("button", name="Send reply").click()
    assert answer.value.status == 400
    expect(page.get_by_role("alert")).to_contain_text("Write something before sending.")
    assert Message.objects.filter(ticket=ticket, direction="out").count() == 2
    page.context.close()


def test_a_customer_texts_from_the_simulator_and_the_answers_arrive_without_a_reload(
    page: Page, live_server: LiveServer
) -> None:
    base = live_server.url
    agent = get_user_model().objects.create_user("agent", password=PASSWORD)
    page.goto(f"{base}/simulator/")
    page.get_by_label("Phone number").fill(CUSTOMER)
    page.get_by_role("button", name="Use this number").click()
    page.get_by_role("textbox", name="Message", exact=True).fill(
        "Hello, is anyone there? My order has not arrived."
    )
    page.get_by_role("button", name="Send", exact=True).click()
    thread = page.get_by_role("list", name="Messages")
    expect(thread).to_contain_text("My order has not arrived.")

    # A mark on this window survives polling but not a reload or navigation.
    page.evaluate("window.stillTheSamePage = true")
    drain()
    ticket = Ticket.objects.get(contact__phone=CUSTOMER)
    expect(thread).to_contain_text(f"Your ticket ID is {ticket.ref}.")
    ticket.reply("Hi! I'm looking into it now; I'll text you the tracking link.", author=agent)
    drain()
    expect(thread).to_contain_text("the tracking link")
    assert page.evaluate("window.stillTheSamePage") is True
    screenshot(page, "simulator.png")
