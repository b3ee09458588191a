"""Helpers shared by the benchmarks: databases, the desk as a subprocess, ports, percentiles.

Everything here talks to 127.0.0.1 only, and every process or database it
makes is removed again when its `with` block ends, even on an error.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SMSDESK = BIN / "smsdesk"
FAKE = REPO / "bench" / "fake_provider.py"
PG_SERVER = os.environ.get("SMSDESK_BENCH_PG", "postgres://postgres@127.0.0.1:5432")
# Benchmark databases carry this prefix so a leftover one is easy to spot and drop.
PG_PREFIX = "smsdesk_bench_"
SIGNING_KEY = "bench-signing-key-0123456789abcdef0123456789"  # HS256 wants 32+ bytes
AGENT, PASSWORD = "bench-agent", "bench-agent-password-not-secret"  # the benches' agent
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
ORIGINATOR = "+3197010000000"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load() -> str:
    """The 1-minute load average: figures taken on a busy machine must say so."""
    return f"{os.getloadavg()[0]:.2f}"


@dataclass
class Row:
    """One line of the results table."""

    database: str
    measure: str
    conditions: str
    result: str
    p50_ms: float | None = None
    p99_ms: float | None = None
    notes: str = ""
    load: str = field(default_factory=load)
    failed: bool = False  # lost data or broke: the run must not pass


COLUMNS = ("database", "measure", "conditions", "result", "p50 ms", "p99 ms", "load", "notes")


def cells(row: Row) -> list[str]:
    def ms(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"

    # One line per row, whatever an error message holds; "|" would split a Markdown cell.
    notes = " ".join(row.notes.split()).replace("|", "/")
    return [row.database, row.measure, row.conditions, row.result] + [
        ms(row.p50_ms),
        ms(row.p99_ms),
        row.load,
        notes,
    ]


def format_row(row: Row) -> str:
    return " | ".join(cells(row))


def table(rows: Sequence[Row], markdown: bool = False) -> str:
    """The results as a Markdown table, or as aligned text columns."""
    body = [cells(row) for row in rows]
    if markdown:
        lines = [COLUMNS, ["---"] * len(COLUMNS), *body]
        return "\n".join("| " + " | ".join(line) + " |" for line in lines)
    widths = [max(len(line[i]) for line in [COLUMNS, *body]) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [COLUMNS, *body]
    )


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list (nan when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


def wait_until(what: str, check: Callable[[], bool], timeout: float, poll: float = 0.1) -> float:
    """Poll `check` until it is true; returns the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(poll)
    raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")


# Databases


@contextmanager
def database(kind: str, workdir: Path, tag: str) -> Iterator[str]:
    """A fresh, empty database URL of `kind` (sqlite or postgres), removed afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / f'{tag}.sqlite3'}"
        return
    name = f"{PG_PREFIX}{tag}_{os.getpid()}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rows(database_url: str, sql: str) -> list[tuple[object, ...]]:
    """The rows of one query (a fresh connection: the desk is another process)."""
    if database_url.startswith("sqlite"):
        db = sqlite3.connect(urlsplit(database_url).path[1:], timeout=60)
        try:
            return list(db.execute(sql).fetchall())
        finally:
            db.close()
    with psycopg.connect(database_url) as conn:
        return list(conn.execute(sql).fetchall())


def count(database_url: str, sql: str) -> int:
    """One integer from the database."""
    found = rows(database_url, sql)
    return int(found[0][0]) if found else 0  # type: ignore[call-overload]


def desk_env(database_url: str, base_url: str, **extra: str) -> dict[str, str]:
    """The desk's environment: this database, signed webhooks, nothing from the shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMSDESK_", "MESSAGEBIRD_"))}
    env.update(
        DATABASE_URL=database_url,
        SMSDESK_PUBLIC_URL=base_url,
        SMSDESK_LOG_LEVEL="WARNING",
        MESSAGEBIRD_SIGNING_KEY=SIGNING_KEY,
        **extra,
    )
    return env


def manage(database_url: str, *args: str) -> None:
    """Run an `smsdesk` management command against the database (migrate, shell …)."""
    env = desk_env(database_url, "http://127.0.0.1")
    subprocess.run([str(SMSDESK), *args], env=env, cwd=REPO, check=True, timeout=900)


# The desk


@dataclass
class Desk:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    trivial: str = "/healthz"
    notes: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@contextmanager
def serve(
    database_url: str, workdir: Path, serve_args: Sequence[str] = (), **extra_env: str
) -> Iterator[Desk]:
    """`smsdesk serve` on a free port, answering; stopped with its whole process group."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / f"serve-{port}.log"
    cmd = [str(SMSDESK), "serve", "--port", str(port), *serve_args]
    with log.open("wb") as out:
        # A session of its own, so the stop below reaches any web or worker
        # processes `serve` forks, and nothing else.
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=desk_env(database_url, url, **extra_env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    desk = Desk(url, proc, log)

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"smsdesk serve exited:\n{log.read_text()[-3000:]}")
        return get_status(url + "/login/") == 200

    try:
        wait_until("smsdesk serve to answer", answers, timeout=120)
        if get_status(url + "/healthz") != 200:
            desk.trivial = "/login/"
            desk.notes.append("no /healthz: ceiling is GET /login/")
        yield desk
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group started for `proc`, then SIGKILL what is left."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
    try:
        # Children of a stopped leader may outlive it; the group id is still ours.
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


# Processes


@contextmanager
def fake_provider(workdir: Path) -> Iterator[tuple[str, Path]]:
    """The fake MessageBird on a free port: its URL and its log of received messages."""
    port = free_port()
    log = workdir / f"fake-provider-{port}.log"  # one per run: numbers repeat across runs
    proc = subprocess.Popen(
        [sys.executable, str(FAKE), "--port", str(port), "--log", str(log)],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        # Bounded by the desk's own start-up wait if the fake never says it.
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("bench/fake_provider.py did not start")
        yield f"http://127.0.0.1:{port}", log
    finally:
        stop(proc)


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after the last ")".
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of these processes (threads included)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cmdline(pid: int) -> str:
    """A short name for a process: `smsdesk serve --port`, not the interpreter's path."""
    parts = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    if Path(parts[0]).name.startswith("python") and len(parts) > 1:
        parts = parts[1:]
    return " ".join([Path(parts[0]).name, *parts[1:3]]).strip()


# The machine


def machine() -> dict[str, str]:
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    try:
        with psycopg.connect(f"{PG_SERVER}/postgres") as conn:
            row = conn.execute("SHOW server_version").fetchone()
            postgres = str(row[0]) if row else "?"
    except psycopg.Error:
        postgres = "not reachable"
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpus": f"{os.cpu_count()} ({cpu})",
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "postgresql": postgres,
        "kernel": platform.release(),
    }


def run_main(
    doc: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace, Path], Iterator[Row]],
) -> None:
    """A benchmark's command line: parse, run in a scratch folder, print rows, exit 1 on failure."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory(prefix="smsdesk-bench-") as tmp:
        for row in run(args, Path(tmp)):
            failed |= row.failed
            print(format_row(row), flush=True)
    sys.exit(1 if failed else 0)


def sign_in(base_url: str) -> httpx.Client:
    """A client signed in as the benchmarks' agent (AGENT), through the login form."""
    client = httpx.Client(base_url=base_url, timeout=30)
    token = CSRF_FIELD.search(client.get("/login/").text)
    assert token, "no CSRF token on the sign-in page"
    response = client.post(
        "/login/",
        data={"username": AGENT, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)},
        headers={"Referer": base_url + "/login/"},
    )
    if response.status_code != 302:
        raise RuntimeError(f"sign-in failed: {response.status_code}")
    return client
