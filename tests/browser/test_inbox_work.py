"""Working tickets in a real browser: keyboard, assignment, notes, names, collisions."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Browser, Page, expect
from pytest_django.live_server_helper import LiveServer

from smsdesk.desk.models import Message, Ticket
from tests.browser.conftest import new_page, screenshot
from tests.browser.test_agent_flow import PASSWORD, sign_in, text_the_desk
from tests.conftest import drain

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CUSTOMERS = [
    ("+31687654321", "Can I change the delivery address for order 1182?"),
    ("+447700900123", "Hi, the app keeps logging me out since the update."),
    ("+31612345678", "My parcel was due yesterday and has not arrived."),
]


@pytest.fixture
def desk(browser: Browser, live_server: LiveServer) -> Page:
    """Three customers have texted; agent (signed in) and bea work the desk."""
    users = get_user_model().objects
    users.create_user("agent", password=PASSWORD)
    users.create_user("bea", password=PASSWORD)
    for phone, text in CUSTOMERS:
        text_the_desk(live_server.url, phone, text)
    drain()
    page = new_page(browser)
    sign_in(page, live_server.url)
    # Keys pressed before the page's deferred scripts run would go nowhere.
    page.wait_for_load_state("load")
    return page


def newest_first() -> list[Ticket]:
    return list(Ticket.objects.order_by("-last_message_at", "-id"))


def test_keyboard_moves_through_the_list_opens_replies_and_closes(
    desk: Page, live_server: LiveServer
) -> None:
    page = desk
    first, second, _ = newest_first()
    rows = page.locator("a[data-row]")
    page.keyboard.press("j")
    expect(rows.nth(0)).to_be_focused()
    page.keyboard.press("j")
    expect(rows.nth(1)).to_be_focused()
    page.keyboard.press("k")
    expect(rows.nth(0)).to_be_focused()
    expect(rows.nth(0)).to_have_class(re.compile(r"\bcurrent\b"))
    page.keyboard.press("/")
    expect(page.get_by_label("Search tickets")).to_be_focused()
    page.keyboard.press("Escape")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live_server.url}/admin/tickets/{second.ref}")
    page.wait_for_load_state("load")
    page.keyboard.press("r")
    expect(page.get_by_label(re.compile("^Reply to"))).to_be_focused()
    # Typing "e" in the reply box is text, not a shortcut.
    page.keyboard.type("see")
    expect(page.get_by_label(re.compile("^Reply to"))).to_have_value("see")
    page.keyboard.press("Escape")
    page.keyboard.press("e")
    expect(page.get_by_role("status")).to_contain_text(f"Ticket {second.ref} closed.")
    second.refresh_from_db()
    assert second.status == Ticket.Status.CLOSED
    assert first.ref != second.ref
    # The shortcuts are listed on the inbox page.
    page.goto(f"{live_server.url}/admin/")
    shortcuts = page.get_by_role("complementary", name="Keyboard shortcuts")
    for line in ("next / previous ticket", "open it", "search", "reply", "close"):
        expect(shortcuts).to_contain_text(line)


def test_an_agent_assigns_names_and_notes_a_ticket(desk: Page, live_server: LiveServer) -> None:
    page = desk
    ticket = newest_first()[0]
    page.get_by_role("link", name=re.compile(ticket.ref)).click()
    page.get_by_role("button", name="Assign to me").click()
    expect(page.get_by_role("status")).to_contain_text(f"Ticket {ticket.ref} is yours.")
    expect(page.locator("[data-live-fragment=head]")).to_contain_text("assigned to you")

    page.get_by_label("Assign to").select_option(label="bea")
    page.get_by_role("button", name="Assign", exact=True).click()
    expect(page.locator("[data-live-fragment=head]")).to_contain_text("assigned to bea")

    page.get_by_label("Contact name").fill("Priya Shah")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Priya Shah")

    page.get_by_text("Add an internal note").click()
    page.get_by_label("Internal note").fill("Courier confirmed a redelivery for Friday.")
    page.get_by_role("button", name="Save note").click()
    note = page.locator(".thread .msg.note")
    expect(note).to_contain_text("Courier confirmed a redelivery for Friday.")
    expect(note).to_contain_text("Internal note")
    screenshot(page, "ticket-working.png")
    assert Message.objects.get(direction=Message.Direction.NOTE).ticket == ticket
    phone = new_page(
        page.context.browser, width=390, height=844, storage_state=page.context.storage_state()
    )  # type: ignore[arg-type]
    phone.goto(page.url)
    expect(phone.get_by_role("button", name="Send reply")).to_be_visible()
    screenshot(phone, "ticket-phone.png")
    phone.context.close()

    page.get_by_role("link", name="← Inbox").click()
    row = page.get_by_role("link", name=re.compile(ticket.ref))
    expect(row).to_contain_text("Priya Shah")
    expect(row).to_contain_text("bea")
    page.get_by_role("link", name=re.compile("^Unassigned")).click()
    expect(page.get_by_role("link", name=re.compile(ticket.ref))).to_have_count(0)
    page.get_by_role("link", name=re.compile("^Everyone")).click()
    screenshot(page, "inbox-views.png")


def test_a_reply_after_a_colleagues_warns_before_it_is_sent(
    desk: Page, live_server: LiveServer
) -> None:
    # Without JavaScript: the server's own check (the live warning has its own test).
    page = new_page(
        desk.context.browser, java_script_enabled=False, storage_state=desk.context.storage_state()
    )  # type: ignore[arg-type]
    ticket = newest_first()[0]
    page.goto(f"{live_server.url}/admin/tickets/{ticket.ref}")
    page.get_by_label(re.compile("^Reply to")).fill("Let me look into it.")
    ticket.reply("Your parcel is on its way.", author=get_user_model().objects.get(username="bea"))
    page.get_by_role("button", name="Send reply").click()
    expect(page.get_by_role("alert")).to_contain_text("bea replied since you opened this ticket")
    expect(page.get_by_label(re.compile("^Reply to"))).to_have_value("Let me look into it.")
    expect(page.locator(".thread")).to_contain_text("Your parcel is on its way.")
    assert not ticket.messages.filter(body="Let me look into it.").exists()
    screenshot(page, "ticket-collision.png")
    page.get_by_role("button", name="Send anyway").click()
    expect(page.get_by_role("status")).to_contain_text("Reply queued.")
    assert ticket.messages.filter(body="Let me look into it.").exists()


def test_an_agent_texts_a_new_number(desk: Page, live_server: LiveServer) -> None:
    page = desk
    page.get_by_role("link", name="New conversation").click()
    page.get_by_label("Phone number").fill("+44 7700 900999")
    page.get_by_label("Message").fill("Hello from the support team")
    page.get_by_role("button", name="Send and open ticket").click()
    expect(page.get_by_role("status")).to_contain_text("Message queued")
    expect(page.locator(".thread")).to_contain_text("Hello from the support team")
    ticket = Ticket.objects.get(contact__phone="+447700900999")
    expect(page).to_have_url(f"{live_server.url}/admin/tickets/{ticket.ref}")
    page.goto(f"{live_server.url}/admin/new")
    page.get_by_label("Phone number").fill("not a number")
    page.get_by_label("Message").fill("Hi")
    page.get_by_role("button", name="Send and open ticket").click()
    expect(page.get_by_role("alert")).to_contain_text("is not a phone number")


def test_a_colleagues_reply_arriving_live_warns_before_sending(
    desk: Page, live_server: LiveServer
) -> None:
    page = desk
    ticket = newest_first()[0]
    page.get_by_role("link", name=re.compile(ticket.ref)).click()
    warning = page.locator("[data-collision-live]")
    expect(warning).to_be_hidden()
    page.get_by_label(re.compile("^Reply to")).fill("Let me check.")
    ticket.reply("Refund approved.", author=get_user_model().objects.get(username="bea"))
    expect(page.locator(".thread")).to_contain_text("Refund approved.")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("bea replied while you were here")
    # The draft survives the live refresh.
    expect(page.get_by_label(re.compile("^Reply to"))).to_have_value("Let me check.")
