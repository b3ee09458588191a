"""Helpers for tests that run the real `smsdesk` command as a subprocess."""

from __future__ import annotations

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
