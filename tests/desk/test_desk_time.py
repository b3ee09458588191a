"""The fast message timestamp renders exactly what Django's date filters did."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.template import Context, Template
from django.utils import timezone

DATE_FILTERS = Template(
    '<time datetime="{{ t|date:\'c\' }}" title="{{ t|date:\'j F Y, H:i:s\' }}">{{ t|date:"j M, H:i" }}</time>'
)
FAST = Template("{% load desk_time %}{{ t|message_time }}")


@pytest.mark.parametrize("zone", ["UTC", "Europe/Amsterdam", "America/St_Johns"])
@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 24, 1, 28, 5, 123456, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),  # the hour Amsterdam moves to summer time
        datetime(2025, 1, 1, 0, 0, tzinfo=UTC),
        datetime(2026, 9, 9, 23, 59, 59, tzinfo=UTC),
    ],
)
def test_it_matches_the_date_filters_in_every_time_zone(moment: datetime, zone: str) -> None:
    with timezone.override(zone):
        context = Context({"t": moment})
        assert FAST.render(context) == DATE_FILTERS.render(context)
