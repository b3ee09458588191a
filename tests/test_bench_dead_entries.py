"""The dead index entries benchmark still runs: `bench/dead_entries.py`, figures not checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
    reason="dead index entries are PostgreSQL's; it runs in the PostgreSQL pass",
)


def test_it_times_each_scan_from_the_start_and_from_the_floors_at_each_count() -> None:
    done = subprocess.run(
        [sys.executable, "bench/dead_entries.py", "--dead", "0", "100", "--samples", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == ["0"] * 6 + ["100"] * 6
    assert sum(line.endswith("the floors") for line in done.stdout.splitlines()) == 6
