"""The reply box counts SMS parts as the server does, and swaps smart punctuation for GSM."""

from __future__ import annotations

import json
import random
import re

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import Locator, Page, expect
from pytest_django.live_server_helper import LiveServer

from smsdesk.desk.models import Contact, Message, Ticket
from smsdesk.lib.segments import measure, tables
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_agent_flow import CUSTOMER, PASSWORD, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ticket_page(page: Page, live_server: LiveServer) -> tuple[Page, Ticket]:
    get_user_model().objects.create_user("agent", password=PASSWORD)
    ticket, _ = Ticket.open_for(Contact.for_phone(CUSTOMER), timezone.now())
    sign_in(page, live_server.url)
    page.goto(f"{live_server.url}/admin/tickets/{ticket.ref}")
    return page, ticket


def reply_box(page: Page) -> Locator:
    return page.get_by_role("textbox", name=re.compile("^Reply"))


def test_it_counts_gsm_euro_and_emoji_and_fixes_smart_punctuation(
    ticket_page: tuple[Page, Ticket],
) -> None:
    page, ticket = ticket_page
    box = reply_box(page)
    count = page.locator(".sms-count")
    note = page.locator(".sms-forcing")
    fix = page.get_by_role("button", name="Replace with GSM look-alikes")
    expect(count).to_have_text("0 / 160 · GSM-7 · 0 SMS")
    # The status line describes the box to assistive technology and is announced.
    expect(box).to_have_accessible_description(re.compile("0 / 160"))
    expect(page.locator(".sms-status")).to_have_attribute("aria-live", "polite")

    box.fill("Your parcel arrives tomorrow morning.")
    expect(count).to_have_text("37 / 160 · GSM-7 · 1 SMS")
    expect(note).to_be_hidden()
    expect(fix).to_be_hidden()

    box.fill("The refund is 12€.")
    expect(count).to_have_text("19 / 160 · GSM-7 · 1 SMS")  # 18 characters, € costs two

    box.fill("Thanks 👍👍")
    expect(count).to_have_text("11 / 70 · UCS-2 · 1 SMS")
    expect(note).to_have_text("👍 forces UCS-2 (70 per SMS)")
    expect(fix).to_be_hidden()  # an emoji has no GSM look-alike

    box.fill("a" * 161)
    expect(count).to_have_text("GSM-7 · 2 SMS · 145 left")

    smart = "It’s on its way — “tomorrow”…\u00a0Thanks!"
    box.fill(smart)
    expect(count).to_have_text("37 / 70 · UCS-2 · 1 SMS")
    expect(note).to_have_text("’ — “ ” … U+00A0 force UCS-2 (70 per SMS)")
    expect(fix).to_be_visible()
    page.locator("form.composer").screenshot(path=str(SCREENSHOTS / "composer.png"))

    fix.click()
    fixed = 'It\'s on its way - "tomorrow"... Thanks!'
    expect(box).to_have_value(fixed)
    expect(box).to_be_focused()
    expect(count).to_have_text(f"{len(fixed)} / 160 · GSM-7 · 1 SMS")
    expect(note).to_be_hidden()
    expect(fix).to_be_hidden()

    page.get_by_role("button", name="Send reply").click()
    expect(page.get_by_role("status")).to_contain_text("Reply queued.")
    sent = Message.objects.get(ticket=ticket, direction="out")
    assert sent.body == fixed
    assert measure(sent.body).encoding == "gsm7"


# Texts where a slip in the hand-ported JavaScript would show: part
# boundaries, pieces that must stay whole, and what Django strips.
SAMPLES = [
    "a" * 160,
    "a" * 161,
    "a" * 152 + "€" + "a" * 152,
    "{[|]}~^\\" * 20,
    "ж" * 70,
    "ж" * 71,
    "a" * 66 + "😀" + "a" * 66,
    "a" * 66 + "🇳🇱" + "a" * 64,
    "🇳🇱🇧🇪🇩",
    "a" * 63 + "🏳️‍🌈" + "a" * 63,
    "👩‍👩‍👧 👍🏽 🏴󠁧󠁢󠁳󠁣󠁴󠁿",
    "a" * 66 + "e\u0301" + "a" * 66,
    "a" + "\u0301" * 100,
    "  \u00a0Garçon, ça va ?\u3000 ",
    "Line one\nLine two\n",
    "日本語のテキスト" * 12,
    "\u200b\ufeffzero width",
]


def test_the_browser_counts_exactly_as_the_server(ticket_page: tuple[Page, Ticket]) -> None:
    page, _ = ticket_page
    assert json.loads(page.locator("#sms-tables").text_content() or "") == tables()
    box, status = reply_box(page), page.locator(".sms-status")
    for text in SAMPLES:
        box.fill(text)
        expected = measure(text.strip())
        expect(status).to_have_attribute("data-encoding", expected.encoding)
        expect(status).to_have_attribute("data-units", str(expected.units))
        expect(status).to_have_attribute("data-segments", str(expected.segments))
        expect(status).to_have_attribute("data-remaining", str(expected.remaining))
        assert json.loads(status.get_attribute("data-forcing") or "") == list(expected.forcing)


# Characters that make pieces, boundaries and look-alikes interesting.
ALPHABET = list("aé€{\\ ж\n😀\u200d\u0301\ufe0f🏽🇳\U000e0067“\u00a0")
JS_MEASURE = """(texts) => {
    const box = document.querySelector("textarea[data-sms-composer]");
    const status = document.querySelector(".sms-status");
    return texts.map((text) => {
        box.value = text;
        box.dispatchEvent(new Event("input"));
        const d = status.dataset;
        return [d.encoding, +d.segments, +d.units, +d.remaining, JSON.parse(d.forcing)];
    });
}"""


def test_the_browser_agrees_with_the_server_on_random_texts(
    ticket_page: tuple[Page, Ticket],
) -> None:
    page, _ = ticket_page
    chance = random.Random(20240601)
    texts = ["".join(chance.choices(ALPHABET, k=chance.randrange(1, 300))) for _ in range(2000)]
    counted = page.evaluate(JS_MEASURE, texts)
    for text, (encoding, segments, units, remaining, forcing) in zip(texts, counted, strict=True):
        expected = measure(text.strip())
        assert (encoding, segments, units, remaining, tuple(forcing)) == (
            expected.encoding,
            expected.segments,
            expected.units,
            expected.remaining,
            expected.forcing,
        ), text


def test_a_reply_with_line_breaks_is_stored_as_it_was_counted(
    ticket_page: tuple[Page, Ticket],
) -> None:
    page, ticket = ticket_page
    reply_box(page).fill("Line one\nLine two")
    expect(page.locator(".sms-count")).to_have_text("17 / 160 · GSM-7 · 1 SMS")
    page.get_by_role("button", name="Send reply").click()
    expect(page.get_by_role("status")).to_contain_text("Reply queued.")
    assert Message.objects.get(ticket=ticket, direction="out").body == "Line one\nLine two"


def test_the_new_conversation_form_counts_too(page: Page, live_server: LiveServer) -> None:
    get_user_model().objects.create_user("agent", password=PASSWORD)
    sign_in(page, live_server.url)
    page.goto(f"{live_server.url}/admin/new")
    page.get_by_role("textbox", name="Message").fill("Hello from the desk {ref}")
    expect(page.locator(".sms-count")).to_have_text("27 / 160 · GSM-7 · 1 SMS")
