"""`smsdesk worker` runs below the web processes' CPU priority, so webhooks are acknowledged first."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.subprocesses import SMSDESK, WAIT, subprocess_env, wait_for


def nice_of(pid: int) -> int:
    # /proc/<pid>/stat: the 19th field; the command name may hold spaces.
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.fixture
def desk_env(tmp_path: Path) -> dict[str, str]:
    env = subprocess_env(f"sqlite:///{tmp_path / 'desk.sqlite3'}")
    subprocess.run([str(SMSDESK), "migrate", "-v0"], env=env, cwd=tmp_path, check=True, timeout=120)
    return env


def run_worker(env: dict[str, str], tmp_path: Path, *args: str) -> int:
    """Start `smsdesk worker`, return its nice value once it works, then stop it with SIGTERM."""
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(SMSDESK), "worker", *args], env=env, cwd=tmp_path, stdout=out, stderr=out
        )
    try:
        wait_for("the worker to start", lambda: "worker started" in log.read_text(), proc)
        nice = nice_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT) == 0, log.read_text()
        return nice
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_worker_lowers_its_own_cpu_priority(desk_env: dict[str, str], tmp_path: Path) -> None:
    own = nice_of(os.getpid())
    assert run_worker(desk_env, tmp_path) == min(19, own + 10)


def test_nice_zero_keeps_the_priority(desk_env: dict[str, str], tmp_path: Path) -> None:
    own = nice_of(os.getpid())
    assert run_worker(desk_env, tmp_path, "--nice", "0") == own
