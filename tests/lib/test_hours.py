"""Business hours: parsing, open or closed at a moment, and the next opening."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from smsdesk.lib.hours import BadHours, parse

WEEK = "Mon-Fri 09:00-17:30; Sat 10:00-14:00"


def at(text: str, zone: str = "Europe/Amsterdam") -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


@pytest.mark.parametrize(
    ("moment", "open_"),
    [
        ("2026-12-01 09:00", True),  # a Tuesday, at opening
        ("2026-12-01 08:59", False),
        ("2026-12-01 17:29", True),
        ("2026-12-01 17:30", False),  # closing time is closed
        ("2026-12-05 11:00", True),  # Saturday
        ("2026-12-05 14:00", False),
        ("2026-12-06 11:00", False),  # Sunday
    ],
)
def test_open_and_closed_by_local_wall_clock(moment: str, open_: bool) -> None:
    assert parse(WEEK, "Europe/Amsterdam").is_open(at(moment)) is open_


def test_an_instant_is_read_in_the_business_time_zone() -> None:
    hours = parse(WEEK, "Europe/Amsterdam")
    # 08:30 UTC on a Tuesday in winter is 09:30 in Amsterdam.
    assert hours.is_open(datetime(2026, 12, 1, 8, 30, tzinfo=UTC))
    assert not hours.is_open(datetime(2026, 12, 1, 7, 30, tzinfo=UTC))


def test_the_next_opening_skips_closed_days() -> None:
    hours = parse(WEEK, "Europe/Amsterdam")
    assert hours.next_open(at("2026-12-05 15:00")) == at("2026-12-07 09:00")  # Sat → Mon
    assert hours.next_open(at("2026-12-01 07:00")) == at("2026-12-01 09:00")
    assert hours.next_open(at("2026-12-04 18:00")) == at("2026-12-05 10:00")  # Fri → Sat


def test_empty_hours_are_always_open() -> None:
    hours = parse("", "UTC")
    assert hours.always_open and hours.is_open(at("2026-12-06 03:00"))
    assert hours.next_open(at("2026-12-06 03:00")) is None


def test_lists_wrapping_ranges_and_midnight() -> None:
    hours = parse("Mon,Wed 08:00-12:00; Sat-Sun 20:00-24:00", "UTC")
    assert hours.is_open(at("2026-12-02 08:00", "UTC"))  # Wednesday
    assert not hours.is_open(at("2026-12-01 08:00", "UTC"))  # Tuesday
    assert hours.is_open(at("2026-12-06 23:59", "UTC"))  # Sunday
    assert parse("Sat-Mon 10:00-11:00", "UTC").is_open(at("2026-11-30 10:30", "UTC"))


@pytest.mark.parametrize(
    ("description", "zone"),
    [
        ("Weekdays 09:00-17:00", "UTC"),
        ("Mon-Fri 9-5", "UTC"),
        ("Mon-Fri 17:00-09:00", "UTC"),
        ("Mon-Fri 09:00-25:00", "UTC"),
        ("Mon-Fri 09:00-17:00", "Mars/Olympus"),
    ],
)
def test_bad_hours_are_refused_with_a_reason(description: str, zone: str) -> None:
    with pytest.raises(BadHours):
        parse(description, zone)
