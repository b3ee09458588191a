"""Sender normalisation: every number to E.164, sender names kept, nonsense refused."""

from __future__ import annotations

import pytest

from smsdesk.lib.phone import InvalidNumber, is_phone_number, normalise_sender


@pytest.mark.parametrize(
    "raw",
    [
        "+31612345678",
        "31612345678",  # MessageBird's legacy callbacks: country code, no "+"
        "0031612345678",
        "+31 6 12345678",
        "+31 (6) 123-456.78",
        "  +31612345678\n",
    ],
)
def test_it_normalises_international_forms_to_e164(raw: str) -> None:
    assert normalise_sender(raw) == "+31612345678"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+14155552671", "+14155552671"),
        ("14155552671", "+14155552671"),
        ("004915700000000", "+4915700000000"),
        ("+491710000000", "+491710000000"),
    ],
)
def test_it_normalises_other_countries(raw: str, expected: str) -> None:
    assert normalise_sender(raw) == expected


@pytest.mark.parametrize(
    ("raw", "region"), [("0612345678", "NL"), ("06 12 34 56 78", "NL"), ("06-12345678", "nl")]
)
def test_it_reads_a_national_number_with_a_default_region(raw: str, region: str) -> None:
    assert normalise_sender(raw, region) == "+31612345678"


def test_a_default_region_does_not_change_numbers_with_a_country_code() -> None:
    assert normalise_sender("31612345678", "DE") == "+31612345678"
    assert normalise_sender("+31612345678", "DE") == "+31612345678"
    assert normalise_sender("0031612345678", "DE") == "+31612345678"


def test_a_national_number_without_a_default_region_is_refused() -> None:
    with pytest.raises(InvalidNumber):
        normalise_sender("0612345678")


@pytest.mark.parametrize("sender_id", ["Amazon", "MyShop 24", "A", "ABCDEFGHIJK", "DHL2go"])
def test_it_keeps_an_alphanumeric_sender_id(sender_id: str) -> None:
    assert normalise_sender(sender_id) == sender_id
    assert not is_phone_number(sender_id)


def test_it_trims_around_a_sender_id() -> None:
    assert normalise_sender("  Amazon ") == "Amazon"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "12",  # too short to be a number
        "1" * 40,
        "1234567890123456",  # 16 digits: E.164 allows 15
        "+31abc!",
        "'; drop table",
        "ABCDEFGHIJKL",  # 12 characters: sender ids stop at 11
        "Amazon!",
        "Amaz\u00f6n",  # GSM sender ids are plain ASCII
        "\u0663\u0661\u0666\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668",  # Arabic-Indic digits
        "+",
        "++31612345678",
        "+0612345678",
        "Amazon\x00",
        "3161234\n5678",
    ],
)
def test_it_refuses_what_is_neither_a_number_nor_a_sender_id(raw: str) -> None:
    with pytest.raises(InvalidNumber):
        normalise_sender(raw)


def test_the_refusal_quotes_at_most_40_characters_of_the_input() -> None:
    with pytest.raises(InvalidNumber) as excinfo:
        normalise_sender("x" * 5000 + "!")

    assert len(str(excinfo.value)) < 120


def test_e164_numbers_can_receive_sms() -> None:
    assert is_phone_number(normalise_sender("31612345678"))
