"""Inbox benchmark: agent page latency at 100k tickets / 1M messages.

Seeds a database per engine (bench/seed.py), starts the real `smsdesk
serve` on it, signs in as an agent over HTTP and times sequential GETs
(latency, not throughput) of: the open inbox, a keyset page ~20 pages
deep, the closed and all views, and the ticket page of a 200-message
thread. Prints p50/p99 and the server's CPU time per request, which the
machine's other load disturbs far less than wall-clock time.

Searches (SEARCHES: a rare word, one near smsdesk.desk.search.RARE, a
common word, a phone number's tail, a name) are timed twice. In-process,
as the inbox view runs them (search(), then the first page with previews
and read marks): the CPU column is this process's, which on SQLite
includes the database's work, plus on PostgreSQL its server backend's.
And over HTTP as
`/admin/?status=all&q=…`, once the view answers `q` (a query that matches
nothing must not list tickets), with the desk's CPU as for other pages.

    .venv/bin/python bench/inbox.py                       # SQLite and PostgreSQL, fresh, dropped
    .venv/bin/python bench/inbox.py --reuse               # keep the seeded databases for next time
    .venv/bin/python bench/inbox.py --engine sqlite --tickets 10000 --samples 50
    .venv/bin/python bench/inbox.py --engine postgres --reuse --explain   # plans of the searches
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import common
import httpx
import psycopg
from seed import LONG_THREAD_REF, seed

REPO = Path(__file__).resolve().parents[1]
SMSDESK = REPO / ".venv" / "bin" / "smsdesk"
PG_SERVER = "postgres://postgres@127.0.0.1:5432"
NEXT_LINK = re.compile(r'href="(\?[^"]*after=[^"]+)" rel="next"')
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
REF = re.compile(r"#([23456789ABCDEFGHJKMNPQRSTVWXYZ]{6})\b")
# What agents look for, from rare to common in bench/seed.py's data.
SEARCHES = {
    "rare word": "hourglass",  # a few dozen texts
    "near threshold": "backpack",  # ~1,400 texts: the index's costliest case
    "common word": "refund",  # ~40,000 texts: walks the newest tickets
    "phone tail": "12345",
    "name": "Natarajan",  # ~1,500 contacts
}
NO_MATCH = "zqxv-no-such-words"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["sqlite", "postgres"], action="append")
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=10, help="messages per ticket")
    parser.add_argument("--samples", type=int, default=200, help="timed requests per figure")
    parser.add_argument("--pages", type=int, default=20, help="how deep the keyset page is")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="use (and keep) smsdesk_bench_ib_inbox_<tickets> instead of a fresh database",
    )
    parser.add_argument(
        "--explain", action="store_true", help="print the searches' query plans, then stop"
    )
    parser.add_argument("--in-process", help=argparse.SUPPRESS)  # the child that times search()
    parser.add_argument("--server-args", default="", help="extra `smsdesk serve` options")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after this long")
    return parser.parse_args()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(what: str, check: Callable[[], bool], deadline: float) -> None:
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise SystemExit(f"gave up waiting for {what}")


def count_tickets(url: str) -> int:
    """Tickets stored, or -1 if the database has no desk tables yet."""
    if url.startswith("sqlite"):
        import sqlite3

        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return int(db.execute("SELECT count(*) FROM desk_ticket").fetchone()[0])
        except sqlite3.OperationalError:
            return -1
        finally:
            db.close()
    with psycopg.connect(url) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM desk_ticket").fetchone()[0])  # type: ignore[index]
        except psycopg.errors.UndefinedTable:
            return -1


@contextmanager
def database(engine: str, args: argparse.Namespace, workdir: Path) -> Iterator[str]:
    """A seeded database URL: fresh and removed afterwards, or kept with --reuse."""
    name = (
        f"smsdesk_bench_ib_inbox_{args.tickets}"
        if args.reuse
        else f"smsdesk_bench_ib_{os.getpid()}"
    )
    if engine == "sqlite":
        folder = Path(tempfile.gettempdir()) if args.reuse else workdir
        url = f"sqlite:///{folder / name}.sqlite3"
        fresh = not (folder / f"{name}.sqlite3").exists()
    else:
        url = f"{PG_SERVER}/{name}"
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
            exists = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [name]
            ).fetchone()
            if exists and not args.reuse:
                raise SystemExit(f"database {name} exists; it would be dropped afterwards")
            fresh = not exists
            if fresh:
                admin.execute(f'CREATE DATABASE "{name}"')
    try:
        if fresh or count_tickets(url) < 0:
            started = time.monotonic()
            seed(url, args.tickets, args.messages)
            print(f"  seeded in {time.monotonic() - started:.0f} s")
        elif count_tickets(url) <= args.tickets:
            raise SystemExit(
                f"{name} holds fewer tickets than asked (an interrupted seed?): drop it"
            )
        yield url
    finally:
        if engine == "postgres" and not args.reuse:
            with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def desk(
    database_url: str, args: argparse.Namespace, workdir: Path, deadline: float
) -> Iterator[tuple[str, int]]:
    """`smsdesk serve` on a free port: its base URL and process id."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMSDESK_", "MESSAGEBIRD_"))}
    env.update(DATABASE_URL=database_url, SMSDESK_PUBLIC_URL=base, SMSDESK_LOG_LEVEL="WARNING")
    log = workdir / "serve.log"
    cmd = [str(SMSDESK), "serve", "--port", str(port), *args.server_args.split()]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)

    def answers() -> bool:
        if proc.poll() is not None:
            raise SystemExit(f"smsdesk serve exited:\n{log.read_text()}")
        try:
            return httpx.get(base + "/login/", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until("the desk to answer", answers, deadline)
        yield base, proc.pid
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def create_agent(database_url: str, workdir: Path) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SUPERUSER_PASSWORD": common.PASSWORD}
    done = subprocess.run(
        [str(SMSDESK), "createsuperuser", "--noinput", "--username", common.AGENT, "--email", ""],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode and "already taken" not in done.stderr:  # a reused database has one
        raise SystemExit(f"createsuperuser failed:\n{done.stderr}")


def cpu_seconds(pid: int) -> float:
    """CPU time of the server and every process under it (web processes, worker)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it exited meanwhile
        child = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(child)
        times[child] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo += children.get(current, [])
    return total


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def time_page(client: httpx.Client, pid: int, path: str, samples: int) -> dict[str, float]:
    for _ in range(5):  # warm the server's caches and the connection
        client.get(path).raise_for_status()
    latencies = []
    cpu = cpu_seconds(pid)
    size = 0
    for _ in range(samples):
        started = time.perf_counter()
        response = client.get(path)
        latencies.append(time.perf_counter() - started)
        response.raise_for_status()
        size = len(response.content)
    cpu = cpu_seconds(pid) - cpu
    return {
        "p50": percentile(latencies, 50) * 1000,
        "p99": percentile(latencies, 99) * 1000,
        "max": max(latencies) * 1000,
        "cpu": cpu / samples * 1000,
        "kb": size / 1024,
    }


def deep_page(client: httpx.Client, pages: int, start: str = "/admin/") -> tuple[str, int]:
    """Follow the inbox's "Older" link `pages` times; the URL reached and its depth."""
    path, depth = start, 0
    while depth < pages:
        found = NEXT_LINK.search(client.get(path).text)
        if not found:
            break
        path, depth = "/admin/" + found.group(1).replace("&amp;", "&"), depth + 1
    return path, depth


def measure(client: httpx.Client, pid: int, args: argparse.Namespace, deadline: float) -> None:
    deep, depth = deep_page(client, args.pages)
    figures = {
        "inbox, open, first page": "/admin/",
        f"inbox, open, page {depth + 1} (keyset)": deep,
        "inbox, closed": "/admin/?status=closed",
        "inbox, all": "/admin/?status=all",
        f"ticket #{LONG_THREAD_REF} (200 messages)": f"/admin/tickets/{LONG_THREAD_REF}",
    }
    if search_is_wired(client):
        for label, query in SEARCHES.items():
            figures[f"search {label}, HTTP"] = f"/admin/?status=all&q={quote(query)}"
        common = f"/admin/?status=all&q={quote(SEARCHES['common word'])}"
        deep, depth = deep_page(client, args.pages, start=common)
        figures[f"search common word, page {depth + 1}"] = deep
    else:
        print("  (the inbox ignores ?q= yet: searches timed in-process only)")
    print(f"  load average before: {loadavg()}")
    print(f"  {'page':<34} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'CPU ms/req':>10} {'KB':>6}")
    for label, path in figures.items():
        if time.monotonic() > deadline:
            raise SystemExit("out of time")
        f = time_page(client, pid, path, args.samples)
        print(
            f"  {label:<34} {f['p50']:7.1f} {f['p99']:7.1f} {f['max']:7.1f} "
            f"{f['cpu']:10.1f} {f['kb']:6.0f}"
        )
    print(f"  load average after:  {loadavg()}")


def search_is_wired(client: httpx.Client) -> bool:
    """Whether the inbox narrows by ?q=: a query matching nothing lists no ticket."""
    newest = REF.search(client.get("/admin/?status=all").text)
    assert newest, "no ticket ref on the inbox page"
    return newest.group(0) not in client.get(f"/admin/?status=all&q={NO_MATCH}").text


def search_in_process(database_url: str, args: argparse.Namespace) -> None:
    """Time the searches in a child process set up for the database, as the view runs them."""
    sys.stdout.flush()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMSDESK_", "MESSAGEBIRD_"))}
    env.update(DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="smsdesk.settings")
    cmd = [sys.executable, __file__, "--in-process", database_url, "--samples", str(args.samples)]
    subprocess.run(cmd + ["--explain"] * args.explain, env=env, cwd=REPO, check=True)


def time_searches(args: argparse.Namespace) -> None:
    """The child: search() and the inbox's first page, previews and read marks included.

    The CPU column is this process's and, on PostgreSQL, its server
    backend's too (read from /proc: the server is local).
    """
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection

    from smsdesk.desk.models import Ticket
    from smsdesk.desk.search import search
    from smsdesk.desk.views import inbox_page

    reader = get_user_model()(pk=0)  # an agent who has opened no ticket

    def page(query: str) -> list[Ticket]:
        return inbox_page(search(Ticket.objects.all(), query), reader)

    backend = 0
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]

    def used() -> float:
        return time.process_time() + (cpu_seconds(backend) if backend else 0.0)

    for label, query in SEARCHES.items():
        if args.explain:
            explain(connection, query, page)
            continue
        for _ in range(5):
            page(query)
        latencies, cpu = [], used()
        for _ in range(args.samples):
            started = time.perf_counter()
            found = page(query)
            latencies.append(time.perf_counter() - started)
        cpu = (used() - cpu) / args.samples * 1000
        p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
        name = f"search {label}, in-process"
        print(f"  {name:<34} {p50:7.1f} {p99:7.1f} {max(latencies) * 1000:7.1f} {cpu:10.1f} {0:6d}")
        print(f"    ({query!r}: {len(found)} tickets on the page)", flush=True)


def explain(connection: object, query: str, page: Callable[[str], object]) -> None:
    """The SQL a search runs (probe, then page) with each statement's plan."""
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:  # type: ignore[arg-type]
        page(query)
    print(f"\n=== {query!r}: {len(captured)} queries")
    for statement in captured.captured_queries:
        sql = statement["sql"]
        prefix = "EXPLAIN ANALYZE " if connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN "  # type: ignore[attr-defined]
        print(f"--- {sql[:300]}{' …' if len(sql) > 300 else ''}")
        with connection.cursor() as cursor:  # type: ignore[attr-defined]
            cursor.execute(prefix + sql)
            for row in cursor.fetchall():
                print("   ", " ".join(str(cell) for cell in row))


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(engine: str, args: argparse.Namespace, deadline: float) -> None:
    with tempfile.TemporaryDirectory(prefix="smsdesk-bench-ib-") as tmp:
        workdir = Path(tmp)
        print(f"{engine}: {args.tickets} tickets × {args.messages} messages")
        with database(engine, args, workdir) as url:
            search_in_process(url, args)
            if args.explain:
                return
            create_agent(url, workdir)
            with desk(url, args, workdir, deadline) as (base, pid):
                client = common.sign_in(base)
                try:
                    measure(client, pid, args, deadline)
                finally:
                    client.close()


def main() -> None:
    args = parse_args()
    if args.in_process:
        time_searches(args)
        return
    deadline = time.monotonic() + args.timeout
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}; "
        f"{args.samples} sequential requests per figure, `smsdesk serve {args.server_args}`"
    )
    for engine in args.engine or ["sqlite", "postgres"]:
        run(engine, args, deadline)


if __name__ == "__main__":
    main()
