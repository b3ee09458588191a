"""Helpers for tests that run the real `smsdesk` command as a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMSDESK = REPO / ".venv" / "bin" / "smsdesk"
WAIT = 30.0  # seconds; a bound on every wait, never a pass/fail threshold


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, check: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            pytest.fail(f"smsdesk exited with {proc.returncode} while waiting for {what}")
        time.sleep(0.1)
    pytest.fail(f"gave up after {WAIT:.0f} s waiting for {what}")


def subprocess_env(database_url: str) -> dict[str, str]:
    """The environment for a desk started as a command: this database and
    nothing of the test process's own settings (its DATABASE_URL, provider
    keys or Django settings module must not leak into it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMSDESK_", "MESSAGEBIRD_"))}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(DATABASE_URL=database_url, PYTHONUNBUFFERED="1")
    return env
