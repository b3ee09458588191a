"""Business hours: "Mon-Fri 09:00-17:30; Sat 10:00-14:00" in a time zone.

Days are Mon … Sun (a range like Mon-Fri, or a list like Mon,Wed); times are
24-hour HH:MM, and a closing time of 24:00 means midnight. An empty
description means always open. Hours are read as local wall-clock time in
the given zone, so they follow its daylight-saving changes.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PART = re.compile(r"^\s*([A-Za-z,\- ]+?)\s+(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*$")


class BadHours(ValueError):
    pass


@dataclass(frozen=True)
class Hours:
    """Opening intervals per weekday (0 = Monday), in minutes since midnight."""

    zone: ZoneInfo
    days: tuple[tuple[tuple[int, int], ...], ...]

    @property
    def always_open(self) -> bool:
        return not any(self.days)

    def is_open(self, at: datetime) -> bool:
        if self.always_open:
            return True
        local = at.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.days[local.weekday()])

    def next_open(self, at: datetime) -> datetime | None:
        """The next opening time after `at` (local to the zone); None if always open."""
        if self.always_open:
            return None
        local = at.astimezone(self.zone)
        for ahead in range(8):
            day = (local + timedelta(days=ahead)).date()
            for start, _ in sorted(self.days[day.weekday()]):
                opening = datetime.combine(day, time(start // 60, start % 60), self.zone)
                if opening > local:
                    return opening
        return None


# Parsed once per setting value: the worker asks for every confirmation it queues.
@functools.lru_cache(maxsize=8)
def parse(description: str, zone: str) -> Hours:
    try:
        tz = ZoneInfo(zone)
    except (KeyError, ValueError) as exc:
        raise BadHours(f"unknown time zone {zone!r}") from exc
    days: list[list[tuple[int, int]]] = [[] for _ in DAYS]
    for part in filter(str.strip, description.split(";")):
        match = _PART.match(part)
        if not match:
            raise BadHours(f"{part.strip()!r} is not like 'Mon-Fri 09:00-17:30'")
        names, opens, closes = match.groups()
        start, end = minutes(opens), minutes(closes)
        if end <= start:
            raise BadHours(f"{part.strip()!r} closes before it opens")
        for day in weekdays(names):
            days[day].append((start, end))
    return Hours(tz, tuple(tuple(intervals) for intervals in days))


def minutes(clock: str) -> int:
    hour, minute = (int(n) for n in clock.split(":"))
    if not (0 <= hour <= 24 and 0 <= minute < 60) or (hour == 24 and minute):
        raise BadHours(f"{clock!r} is not a time of day")
    return hour * 60 + minute


def weekdays(names: str) -> list[int]:
    found: list[int] = []
    for item in filter(None, (name.strip().lower() for name in names.split(","))):
        first, _, last = (end.strip()[:3] for end in item.partition("-"))
        if first not in DAYS or (last and last not in DAYS):
            raise BadHours(f"{item!r} is not a day or a range of days like Mon-Fri")
        a, b = DAYS.index(first), DAYS.index(last or first)
        found += [day % 7 for day in range(a, b + 1 if b >= a else b + 8)]
    return found
