"""Ingest benchmark: how fast `smsdesk serve` acknowledges webhooks and threads them.

Starts the real desk as a subprocess on a free port and a fresh database,
fires N webhooks over loopback from a pool of threads (one httpx.Client
each), prints acknowledged webhooks/s with p50/p99 latency, then polls the
journal until the worker has threaded every event and prints events/s end
to end. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import jwt
import psycopg

REPO = Path(__file__).resolve().parents[1]
SMSDESK = REPO / ".venv" / "bin" / "smsdesk"
EXISTING = "+31600000000"

Count = Callable[[str], int]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--requests", type=int, default=5000)
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    parser.add_argument(
        "--database-url",
        help="default: a fresh SQLite file; a postgres:// database is created and dropped",
    )
    parser.add_argument(
        "--to",
        choices=["new", "existing"],
        default="new",
        help="a new number per webhook (a ticket each), or all into one existing ticket",
    )
    parser.add_argument("--signing-key", help="sign every webhook (MessageBird-Signature-JWT)")
    parser.add_argument("--server-threads", type=int, default=8, help="smsdesk serve --threads")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="give up after this many seconds"
    )
    return parser.parse_args()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(what: str, check: Callable[[], bool], deadline: float, poll: float = 0.1) -> float:
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(poll)
    raise SystemExit(f"gave up waiting for {what}")


@contextmanager
def database(url: str | None, workdir: Path) -> Iterator[tuple[str, Count]]:
    """The desk's database URL and a way to count rows in it."""
    if url is None or url.startswith("sqlite"):
        path = Path(urlsplit(url).path[1:]) if url else workdir / "bench.sqlite3"
        if path.exists():
            raise SystemExit(f"{path} exists; the benchmark wants a fresh database")

        def count_sqlite(sql: str) -> int:
            db = sqlite3.connect(path, timeout=30)
            try:
                return int(db.execute(sql).fetchone()[0])
            finally:
                db.close()

        yield f"sqlite:///{path}", count_sqlite
        return

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    server = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(server, autocommit=True) as admin:
        # Never drop a database this script did not create.
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            raise SystemExit(f"database {name} exists; name a new one, it is dropped afterwards")
        admin.execute(f'CREATE DATABASE "{name}"')
    conn = psycopg.connect(url, autocommit=True)

    def count_postgres(sql: str) -> int:
        return int(conn.execute(sql).fetchone()[0])  # type: ignore[arg-type, index]

    try:
        yield url, count_postgres
    finally:
        conn.close()
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def desk(
    database_url: str, args: argparse.Namespace, workdir: Path, deadline: float
) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMSDESK_", "MESSAGEBIRD_"))}
    env.update(DATABASE_URL=database_url, SMSDESK_PUBLIC_URL=url, SMSDESK_LOG_LEVEL="WARNING")
    if args.signing_key:
        env["MESSAGEBIRD_SIGNING_KEY"] = args.signing_key
    log = workdir / "serve.log"
    cmd = [str(SMSDESK), "serve", "--port", str(port), "--threads", str(args.server_threads)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)

    def answers() -> bool:
        if proc.poll() is not None:
            raise SystemExit(f"smsdesk serve exited:\n{log.read_text()}")
        try:
            return httpx.get(url + "/login/", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until("the desk to answer", answers, deadline)
        yield url
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def webhook(url: str, n: int, sender: str, signing_key: str | None) -> tuple[bytes, dict[str, str]]:
    fields = {"originator": sender, "recipient": "+3197010000000", "payload": f"bench text {n}"}
    body = urlencode({**fields, "message_id": f"bench-{n}"}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signing_key:
        now = int(time.time())
        claims = {
            "iss": "MessageBird",
            "nbf": now,
            "exp": now + 300,
            "url_hash": hashlib.sha256(url.encode()).hexdigest(),
            "payload_hash": hashlib.sha256(body).hexdigest(),
        }
        headers["MessageBird-Signature-JWT"] = jwt.encode(claims, signing_key, algorithm="HS256")
    return body, headers


def fire(base: str, args: argparse.Namespace, deadline: float) -> tuple[list[float], int, float]:
    """Send every webhook; latencies in seconds, failures, and the wall time."""
    url = base + "/webhook"
    local = threading.local()

    def send(n: int) -> tuple[float, bool]:
        if time.monotonic() > deadline:
            return 0.0, False
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=30)
        sender = EXISTING if args.to == "existing" else f"+3162{n:07d}"
        body, headers = webhook(url, n, sender, args.signing_key)
        started = time.perf_counter()
        try:
            ok = client.post(url, content=body, headers=headers).status_code == 200
        except httpx.HTTPError:
            ok = False
        return time.perf_counter() - started, ok

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        results = list(pool.map(send, range(args.requests)))
    wall = time.perf_counter() - started
    latencies = sorted(latency for latency, ok in results if ok)
    return latencies, sum(1 for _, ok in results if not ok), wall


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


PENDING = "SELECT count(*) FROM sms_inboundevent WHERE processed_at IS NULL AND error = ''"


def main() -> None:
    args = parse_args()
    deadline = time.monotonic() + args.timeout
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}, "
        f"load average {os.getloadavg()[0]:.1f}\n"
        f"run: {args.requests} webhooks to {args.to} ticket(s), concurrency {args.concurrency}, "
        f"{'signed' if args.signing_key else 'unsigned'}, serve --threads {args.server_threads}"
    )
    with tempfile.TemporaryDirectory(prefix="smsdesk-bench-") as tmp:
        workdir = Path(tmp)
        with database(args.database_url, workdir) as (database_url, count):
            print(f"database: {database_url.split('://')[0]}")
            with desk(database_url, args, workdir, deadline) as base:
                if args.to == "existing":
                    body, headers = webhook(base + "/webhook", -1, EXISTING, args.signing_key)
                    httpx.post(base + "/webhook", content=body, headers=headers).raise_for_status()
                    wait_until("the existing ticket", lambda: count(PENDING) == 0, deadline)
                before = count("SELECT count(*) FROM sms_inboundevent")

                started = time.monotonic()
                latencies, failed, wall = fire(base, args, deadline)
                ok = len(latencies)
                print(
                    f"ingest: {ok} acknowledged, {failed} failed in {wall:.2f} s = {ok / wall:.0f} webhooks/s; "
                    f"latency p50 {percentile(latencies, 50) * 1000:.1f} ms, "
                    f"p99 {percentile(latencies, 99) * 1000:.1f} ms"
                )
                pending = count(PENDING)
                ingested = time.monotonic()
                done = wait_until(
                    "the worker to thread every event", lambda: count(PENDING) == 0, deadline, 0.05
                )
                events = count("SELECT count(*) FROM sms_inboundevent") - before
                errors = count("SELECT count(*) FROM sms_inboundevent WHERE error <> ''")
                tickets = count("SELECT count(*) FROM desk_ticket")
                print(
                    f"threading: {events} events in {done - started:.2f} s from the first webhook "
                    f"= {events / (done - started):.0f} events/s end to end; "
                    f"{pending} were pending when ingest ended, drained in {done - ingested:.2f} s; "
                    f"{errors} errored; {tickets} tickets"
                )
    sys.exit(1 if failed or errors else 0)


if __name__ == "__main__":
    main()
