"""`smsdesk serve`'s process model: web processes plus workers, all stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from smsdesk.desk.management.commands.serve import default_worker_processes
from tests.subprocesses import SMSDESK, WAIT, free_port, subprocess_env, wait_for


def descendants(pid: int) -> set[int]:
    """Every process below pid, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(stat[1]), []).append(int(entry))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def answers(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def workers(pids: set[int]) -> list[int]:
    found = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worker" in cmdline:
            found.append(pid)
    return found


def test_postgresql_gets_a_worker_more_than_the_cpus_and_sqlite_one() -> None:
    assert default_worker_processes("postgresql") == (os.cpu_count() or 1) + 1
    assert default_worker_processes("sqlite") == 1


@pytest.mark.parametrize(("option", "expected"), [([], 1), (["--worker-processes", "2"], 2)])
def test_serve_runs_web_processes_and_workers_and_sigterm_stops_them_all(
    tmp_path: Path, option: list[str], expected: int
) -> None:
    path = tmp_path / "desk.sqlite3"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = subprocess_env(f"sqlite:///{path}")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *[str(SMSDESK), "serve", "--port", str(port), "--workers", "2", "--threads", "2"],
                *option,
            ],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    children: set[int] = set()
    try:
        wait_for("the desk to answer", lambda: answers(url), proc)
        children = descendants(proc.pid)
        # Two web processes and the workers, at least; on SQLite one worker
        # unless told otherwise.
        assert len(children) >= 2 + expected, children
        assert len(workers(children)) == expected, children

        health = httpx.get(url + "/healthz", timeout=WAIT)
        assert (health.status_code, health.text) == (200, "ok")
        form = {"originator": "+31612345678", "payload": "Where is my parcel?", "id": "serve-1"}
        webhook = httpx.post(url + "/webhook", data=form, timeout=WAIT)
        assert (webhook.status_code, webhook.text) == (200, "OK")

        def threaded() -> bool:
            db = sqlite3.connect(path, timeout=WAIT)
            try:
                return bool(
                    db.execute(
                        "SELECT 1 FROM desk_message WHERE direction = 'out' AND status = 'sent'"
                    ).fetchall()
                )
            finally:
                db.close()

        wait_for("the text to be threaded and confirmed", threaded, proc)

        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=WAIT)
        output = log.read_text(errors="replace")
        assert proc.returncode == 0, output
        assert "smsdesk stopped" in output
        assert "Traceback" not in output, output
        assert output.count("Created the first agent") == 1
        deadline = time.monotonic() + WAIT
        while any(alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in children if alive(pid)], output
    finally:
        for pid in [proc.pid, *children]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(timeout=WAIT)
