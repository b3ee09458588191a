"""bench/sample.py is optional: without a checkout of the sample or without Node it only says why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_sample(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "bench/sample.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_skips_without_a_checkout_of_the_sample() -> None:
    done = run_sample()
    assert done.returncode == 0, done.stderr
    assert "sample: skipped: no checkout of the sample given" in done.stdout


def test_it_skips_when_node_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "index.js").write_text("")
    done = run_sample("--dir", str(tmp_path), path=str(tmp_path / "empty"))
    assert done.returncode == 0, done.stderr
    assert "sample: skipped: node not found" in done.stdout
