"""The worker pass benchmark still runs: `bench/passes.py`, figures not checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"),
    reason="it makes its own SQLite database; it runs in the SQLite pass",
)


def test_it_threads_and_sends_every_pass_and_prints_the_median() -> None:
    done = subprocess.run(
        [sys.executable, "bench/passes.py", "--batch", "2", "--passes", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "median CPU-ms per pass over 3 passes" in done.stdout
    assert f"desk {REPO / 'smsdesk'}" in done.stdout
