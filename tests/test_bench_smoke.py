"""The benchmark harness still runs: `bench/run.py --quick`, figures not checked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.skipif(
        shutil.which("wrk") is None and not os.environ.get("CI"),
        reason="wrk is not installed (apt-get install -y wrk, or `make bench-smoke`)",
    ),
    pytest.mark.skipif(
        not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"),
        reason="the quick run makes its own SQLite databases; it runs in the SQLite pass",
    ),
]


def test_it_runs_every_benchmark_and_prints_one_table(tmp_path: Path) -> None:
    markdown = tmp_path / "results.md"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--markdown", str(markdown)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    header = "database  measure"
    assert header in done.stdout
    table = done.stdout.split(header, 1)[1]
    for measure in ("ceiling", "ingest", "end to end", "worker", "memory"):
        assert re.search(rf"^sqlite +{measure} ", table, re.MULTILINE), measure
    assert "| database | measure |" in markdown.read_text()
