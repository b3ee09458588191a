"""Live updates benchmark: webhook → event at a connected inbox, and what open streams cost.

Starts the real `smsdesk serve` on a fresh database with a signed-in agent, then:

1. latency: signed webhooks from new numbers at steady rates, one at a time;
   a client holding the inbox's live connection (/admin/live) timestamps each
   change event. p50/p95/p99 from each webhook's send to the first event
   naming its ticket; and to the inbox list (/admin/?fragment=list) that
   shows it, fetched on events the way live.js does (at once, then at most
   every 100 ms or 3 × the last fetch).
2. crowd: with 0 and then N clients holding live connections (raw sockets,
   one thread), the same server's GET /healthz and signed-webhook
   throughput (wrk), and sequential GETs of the inbox page. The webhooks
   make events that every connected client receives meanwhile.

    .venv/bin/python bench/live.py --database both
    .venv/bin/python bench/live.py --database postgres --clients 0 200 --rate 10
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import common
import httpx
import loadgen
from common import Row

REF_IN_LIST = re.compile(r'href="/admin/tickets/([A-Z0-9]+)"')
NUMBERS = itertools.count()
MIN_GAP = 0.1  # live.js: seconds between list refreshes, at least


# Set-up


def prepare(database_url: str) -> None:
    """Migrate and create the agent whose browser the clients stand in for."""
    common.manage(database_url, "migrate", "--noinput", "-v0")
    env = common.desk_env(
        database_url, "http://127.0.0.1", DJANGO_SUPERUSER_PASSWORD=common.PASSWORD
    )
    subprocess.run(
        [
            str(common.SMSDESK),
            "createsuperuser",
            "--noinput",
            "--username",
            common.AGENT,
            "--email",
            "",
        ],
        env=env,
        cwd=common.REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )


# 1. Latency


class Inbox(threading.Thread):
    """An inbox page's live connection; on events it fetches the list, as live.js does."""

    def __init__(self, client: httpx.Client) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.heard: dict[str, float] = {}  # ticket ref → when an event first named it
        self.shown: dict[str, float] = {}  # ticket ref → when the fetched list first showed it
        self.opened = threading.Event()
        self.stop = threading.Event()
        self.dirty = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        fetcher = threading.Thread(target=self.refresh_list, daemon=True)
        fetcher.start()
        try:
            with self.client.stream("GET", "/admin/live", timeout=None) as response:
                self.opened.set()
                event = ""
                for line in response.iter_lines():
                    if self.stop.is_set():
                        break
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event == "change":
                        now = time.time()
                        for ref in json.loads(line[5:])["tickets"]:
                            self.heard.setdefault(ref, now)
                        self.dirty.set()
                    elif not line:
                        event = ""
        except httpx.HTTPError as exc:
            if not self.stop.is_set():
                self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.opened.set()

    def refresh_list(self) -> None:
        gap = MIN_GAP
        while not self.stop.is_set():
            if not self.dirty.wait(0.2):
                continue
            self.dirty.clear()
            started = time.time()
            html = self.client.get("/admin/?fragment=list").text
            now = time.time()
            for ref in REF_IN_LIST.findall(html):
                self.shown.setdefault(ref, now)
            gap = max(MIN_GAP, 3 * (now - started))
            time.sleep(max(0.0, started + gap - time.time()))


def latency(
    desk: common.Desk, url: str, client: httpx.Client, args: argparse.Namespace, kind: str
) -> Iterator[Row]:
    for rate in args.rate:
        yield from latency_at(desk, url, client, rate, args, kind)


def latency_at(
    desk: common.Desk,
    url: str,
    client: httpx.Client,
    rate: float,
    args: argparse.Namespace,
    kind: str,
) -> Iterator[Row]:
    inbox = Inbox(client)
    inbox.start()
    inbox.opened.wait(30)
    time.sleep(0.5)  # the stream's first bytes are in: it is subscribed
    numbers = [f"+3166{next(NUMBERS):07d}" for _ in range(max(1, int(rate * args.seconds)))]
    load = common.load()
    sent = steady(desk.url, numbers, rate)
    deadline = time.monotonic() + args.timeout
    refs = ticket_refs(url)
    while time.monotonic() < deadline:
        refs = ticket_refs(url)
        if all(refs.get(n) in inbox.heard and refs.get(n) in inbox.shown for n in numbers):
            break
        time.sleep(0.2)
    inbox.stop.set()
    stored = sorted((when - sent[n]) * 1000 for n, when in published(url).items() if n in sent)
    for what, seen in (("event at the client", inbox.heard), ("shown in the list", inbox.shown)):
        delays = sorted((seen[refs[n]] - sent[n]) * 1000 for n in numbers if refs.get(n) in seen)
        missing = len(numbers) - len(delays)
        notes = [
            "the list fetched as live.js does"
            if what.startswith("shown")
            else f"of which webhook → event written (by the worker) p50 "
            f"{common.percentile(stored, 50):.0f} ms, p95 {common.percentile(stored, 95):.0f} ms",
            f"{missing} never arrived" if missing else "",
            *inbox.errors[:1],
        ]
        yield Row(
            kind,
            "live",
            f"webhook → {what}, {rate:g}/s for {args.seconds:g} s, new numbers",
            f"p95 {common.percentile(delays, 95):.1f} ms",
            common.percentile(delays, 50),
            common.percentile(delays, 99),
            "; ".join(n for n in notes if n),
            load,
            failed=bool(missing),
        )


def steady(base_url: str, numbers: Sequence[str], rate: float) -> dict[str, float]:
    """One signed webhook per number at `rate` per second; returns when each was sent.

    As bench/e2e.py's, but every message id is new across calls: a repeated
    one would be taken for a redelivery and dropped.
    """
    tag = next(NUMBERS)
    lifetime = len(numbers) / rate + 600
    requests = [
        loadgen.webhook(base_url, number, f"bench-live-{tag}-{number}", lifetime)
        for number in numbers
    ]
    return dict(zip(numbers, loadgen.paced(base_url, requests, rate).sent, strict=True))


def published(database_url: str) -> dict[str, float]:
    """Customer number → when the first "message" event naming its ticket was written."""
    ticket_phones = dict(
        common.rows(
            database_url,
            "SELECT t.id, c.phone FROM desk_ticket t JOIN desk_contact c ON c.id = t.contact_id",
        )
    )
    first: dict[str, float] = {}
    for tickets, created in common.rows(
        database_url, "SELECT tickets, created FROM live_event WHERE kind = 'message' ORDER BY id"
    ):
        when = timestamp(created)
        for ticket in json.loads(tickets) if isinstance(tickets, str) else tickets:  # type: ignore[arg-type]
            first.setdefault(str(ticket_phones[ticket]), when)
    return first


def timestamp(value: object) -> float:
    """A stored timestamp (SQLite: ISO text in UTC; PostgreSQL: datetime) in seconds."""
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC).timestamp()


def ticket_refs(database_url: str) -> dict[str, str]:
    """Customer number → ticket ref."""
    sql = "SELECT c.phone, t.ref FROM desk_ticket t JOIN desk_contact c ON c.id = t.contact_id"
    return {str(phone): str(ref) for phone, ref in common.rows(database_url, sql)}


# 2. The crowd


class Crowd(threading.Thread):
    """N live connections on raw sockets, read by one thread: the cost stays on the server."""

    def __init__(self, base_url: str, cookie: str, n: int) -> None:
        super().__init__(daemon=True)
        host, port = urlsplit(base_url).hostname, urlsplit(base_url).port
        self.selector = selectors.DefaultSelector()
        self.events = [0] * n
        self.opened = [False] * n
        self.busy = [False] * n
        self.ended = [False] * n
        self.socks = []
        request = (
            f"GET /admin/live HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
        for i in range(n):
            sock = socket.create_connection((str(host), int(port or 80)), timeout=30)
            sock.sendall(request)
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, i)
            self.socks.append(sock)
        self.tails = [b""] * n
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for key, _ in self.selector.select(0.2):
                i, sock = key.data, key.fileobj
                try:
                    data = sock.recv(65536)  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.ended[i] = True
                    self.selector.unregister(sock)
                    continue
                text = self.tails[i] + data
                self.opened[i] = self.opened[i] or b"retry:" in text
                self.busy[i] = self.busy[i] or b": busy" in text
                self.events[i] += text.count(b"event: change")
                self.tails[i] = text[-16:]  # a marker split across reads is seen next time

    def wait_open(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(self.opened):
            time.sleep(0.1)
        return sum(1 for o, b in zip(self.opened, self.busy, strict=True) if o and not b)

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        for sock in self.socks:
            sock.close()


def crowd(
    desk: common.Desk,
    url: str,
    client: httpx.Client,
    args: argparse.Namespace,
    kind: str,
    workdir: Path,
) -> Iterator[Row]:
    """Requests first, then webhooks, for each number of clients: the webhooks add
    tickets, which would make the later inbox pages dearer than the earlier ones."""
    cookie = f"sessionid={client.cookies['sessionid']}"
    for n in args.clients:
        with connected(desk, url, cookie, n, args) as (clients, facts):
            load = common.load()
            cpu = ServerCpu(desk)
            health = loadgen.run_wrk(desk.url + "/healthz", args.concurrency, args.load_seconds)
            yield Row(
                kind,
                "live crowd",
                f"GET /healthz, c={args.concurrency}, {n} live clients",
                f"{health.rate:,.0f} req/s",
                health.p50_ms,
                health.p99_ms,
                "; ".join([*facts, cpu.per(health.requests), server_threads(desk)]),
                load,
            )
            yield inbox_page(desk, client, n, args, kind, facts)
    for n in args.clients:
        with connected(desk, url, cookie, n, args) as (clients, facts):
            yield webhooks(desk, url, clients, n, args, kind, workdir, facts)


@contextmanager
def connected(
    desk: common.Desk, url: str, cookie: str, n: int, args: argparse.Namespace
) -> Iterator[tuple[Crowd, list[str]]]:
    """n open live connections, on a server whose worker is idle."""
    drain(url, args.timeout)
    clients = Crowd(desk.url, cookie, n)
    clients.start()
    try:
        live = clients.wait_open(60)
        time.sleep(1.0)  # let the server settle after the connection burst
        facts = [f"{live}/{n} streams open" if n else "no streams"]
        if live < n:
            facts.append(f"{sum(clients.busy)} told to come back later")
        yield clients, facts
    finally:
        clients.close()


def inbox_page(
    desk: common.Desk,
    client: httpx.Client,
    n: int,
    args: argparse.Namespace,
    kind: str,
    facts: list[str],
) -> Row:
    load = common.load()
    for _ in range(5):
        client.get("/admin/").raise_for_status()
    cpu = ServerCpu(desk)
    times = []
    for _ in range(args.samples):
        started = time.perf_counter()
        client.get("/admin/").raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return Row(
        kind,
        "live crowd",
        f"GET /admin/ (inbox), sequential, {n} live clients",
        f"{common.percentile(times, 50):.1f} ms p50",
        common.percentile(times, 50),
        common.percentile(times, 99),
        "; ".join([*facts, f"{args.samples} requests", cpu.per(args.samples)]),
        load,
    )


def webhooks(
    desk: common.Desk,
    url: str,
    clients: Crowd,
    n: int,
    args: argparse.Namespace,
    kind: str,
    workdir: Path,
    facts: list[str],
) -> Row:
    tag = f"bench-live-{next(NUMBERS)}"
    requests = workdir / "live.txt"
    pool = int(args.load_seconds * 4000)
    batch = ((f"+3167{next(NUMBERS):07d}", f"{tag}-{i}") for i in range(pool))
    loadgen.write_requests(requests, desk.url, batch, args.load_seconds + 600)
    before = sum(clients.events)
    load = common.load()
    cpu = ServerCpu(desk)
    result = loadgen.run_wrk(desk.url + "/webhook", args.concurrency, args.load_seconds, requests)
    spent = cpu.per(result.requests)
    time.sleep(2.0)  # the worker threads the last ones; their events go out
    stored = common.count(url, f"SELECT count(*) FROM sms_inboundevent WHERE key LIKE '{tag}-%'")
    got = [clients.events[i] for i in range(n) if clients.opened[i] and not clients.busy[i]]
    notes = [
        *facts,
        f"{result.non2xx} non-2xx",
        spent,
        f"fewest events at a client {min(got)}, {sum(clients.events) - before:,} in all"
        if got
        else "",
        f"LOST {result.ok - stored} ACKNOWLEDGED WEBHOOKS" if stored < result.ok else "",
        database_connections(url),
    ]
    return Row(
        kind,
        "live crowd",
        f"signed webhooks, new numbers, c={args.concurrency}, {n} live clients",
        f"{result.rate:,.0f} webhooks/s",
        result.p50_ms,
        result.p99_ms,
        "; ".join(note for note in notes if note),
        load,
        failed=stored < result.ok or (bool(got) and min(got) == 0),
    )


def drain(database_url: str, timeout: float) -> None:
    """Wait (bounded) until the worker has threaded every stored webhook."""
    pending = "SELECT count(*) FROM sms_inboundevent WHERE processed_at IS NULL AND error = ''"
    try:
        common.wait_until("the worker", lambda: common.count(database_url, pending) == 0, timeout)
    except TimeoutError:
        pass  # measured anyway; the notes show the load average


class ServerCpu:
    """CPU time of the server's processes (web and worker) from now on."""

    def __init__(self, desk: common.Desk) -> None:
        self.pids = common.process_tree(desk.pid)
        self.start = common.cpu_seconds(self.pids)

    def per(self, requests: int) -> str:
        spent = common.cpu_seconds(self.pids) - self.start
        return f"{spent / max(requests, 1) * 1000:.2f} CPU-ms/req (web+worker)"


def server_threads(desk: common.Desk) -> str:
    counts = []
    for pid in common.process_tree(desk.pid)[1:]:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        threads = next(
            line.split()[1] for line in status.splitlines() if line.startswith("Threads:")
        )
        counts.append(threads)
    return f"threads per process {'/'.join(counts)}"


def database_connections(database_url: str) -> str:
    if database_url.startswith("sqlite"):
        return ""
    name = urlsplit(database_url).path[1:]
    sql = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'"
    return f"{common.count(database_url, sql) - 1} PostgreSQL connections"


# The command line


def run(args: argparse.Namespace, workdir: Path) -> Iterator[Row]:
    for kind in ["sqlite", "postgres"] if args.database == "both" else [args.database]:
        with common.database(kind, workdir, "live") as url:
            prepare(url)
            with common.serve(url, workdir, args.serve_arg) as desk:
                client = common.sign_in(desk.url)
                try:
                    yield from latency(desk, url, client, args, kind)
                    yield from crowd(desk, url, client, args, kind, workdir)
                finally:
                    client.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument(
        "--rate", type=float, nargs="+", default=[2.0, 10.0], help="steady webhooks per second"
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="how long the steady phase lasts"
    )
    parser.add_argument(
        "--clients", type=int, nargs="+", default=[0, 200], help="live connections held meanwhile"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="wrk connections")
    parser.add_argument("--load-seconds", type=float, default=5.0, help="each wrk run's length")
    parser.add_argument("--samples", type=int, default=100, help="timed inbox GETs")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="most seconds to wait for events"
    )
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="passed to `smsdesk serve`"
    )


def main() -> None:
    if not loadgen.have_wrk():
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    common.run_main(__doc__ or "", add_arguments, run)


if __name__ == "__main__":
    main()
