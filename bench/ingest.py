"""Ingest benchmark: how many signed webhooks `smsdesk serve` acknowledges per second.

For each database and each number of tickets already stored, starts the real
desk on a fresh database and, at each concurrency, measures the same server's
trivial response (GET /healthz: the machine's ceiling), then replays signed
webhooks with wrk: new numbers (a ticket each) and one existing ticket. After
every run it counts the journal rows of that run: an acknowledged webhook
that is not stored is data loss, reported loudly and failing the run.

    .venv/bin/python bench/ingest.py --database sqlite --tickets 0 --concurrency 16
    .venv/bin/python bench/ingest.py --database both          # the full matrix (~15 min)
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import common
import loadgen
from common import Row

EXISTING = "+31600000001"
NEW_NUMBERS = itertools.count(1)  # +3162xxxxxxx, never reused within one process
PENDING = "SELECT count(*) FROM sms_inboundevent WHERE processed_at IS NULL AND error = ''"


def seed(database_url: str, tickets: int) -> None:
    """Migrate, then store `tickets` tickets (bench/seed.py, two messages each)."""
    if not tickets:
        common.manage(database_url, "migrate", "--noinput", "-v0")
        return
    from seed import seed as bulk_seed  # bench/seed.py: COPY / executemany, fast

    bulk_seed(database_url, tickets, 2, long_thread=0)


def drain(database_url: str, timeout: float) -> int:
    """Wait (bounded) for the worker to thread every pending event; returns what is left."""
    try:
        common.wait_until(
            "the worker", lambda: common.count(database_url, PENDING) == 0, timeout, 0.2
        )
    except TimeoutError:
        pass
    return common.count(database_url, PENDING)


def senders(to: str, n: int) -> Iterator[str]:
    for _ in range(n):
        yield EXISTING if to == "existing" else f"+3162{next(NEW_NUMBERS):07d}"


def one_run(
    desk: common.Desk,
    database_url: str,
    workdir: Path,
    to: str,
    connections: int,
    args: argparse.Namespace,
) -> tuple[loadgen.Result, int]:
    """Replay signed webhooks once; returns wrk's result and how many rows that run stored."""
    run_id = f"bench-{to}-{next(NEW_NUMBERS)}"
    pool = int(args.seconds * args.pool_rate)
    requests = workdir / "requests.txt"
    webhooks = ((sender, f"{run_id}-{i}") for i, sender in enumerate(senders(to, pool)))
    loadgen.write_requests(requests, desk.url, webhooks, args.seconds + 600, args.body)
    result = loadgen.run_wrk(
        desk.url + "/webhook", connections, args.seconds, requests, args.wrk_threads
    )
    # Acknowledged means committed: every one must be visible now.
    stored = common.count(
        database_url, f"SELECT count(*) FROM sms_inboundevent WHERE key LIKE '{run_id}-%'"
    )
    return result, stored


def measure(kind: str, tickets: int, args: argparse.Namespace, workdir: Path) -> Iterator[Row]:
    label = f"{tickets // 1000}k" if tickets >= 1000 else str(tickets)
    with common.database(kind, workdir, f"ingest_{tickets}") as url:
        seed(url, tickets)
        with common.serve(url, workdir, args.serve_arg) as desk:
            # The existing ticket: one webhook, threaded before any run.
            first = workdir / "first.txt"
            loadgen.write_requests(first, desk.url, [(EXISTING, "bench-first")], 600, args.body)
            loadgen.run_wrk(desk.url + "/webhook", 1, 1, first)
            drain(url, args.drain)
            for c in args.concurrency:
                ceiling = loadgen.run_wrk(
                    desk.url + desk.trivial, c, args.seconds, None, args.wrk_threads
                )
                if tickets == args.tickets[0]:
                    yield Row(
                        kind,
                        "ceiling",
                        f"GET {desk.trivial}, c={c}",
                        f"{ceiling.rate:,.0f} req/s",
                        ceiling.p50_ms,
                        ceiling.p99_ms,
                        "; ".join(desk.notes),
                    )
                for to in args.to:
                    pending = drain(url, args.drain)
                    stored_tickets = common.count(url, "SELECT count(*) FROM desk_ticket")
                    load = common.load()
                    pids = common.process_tree(desk.pid)
                    cpu = common.cpu_seconds(pids)
                    result, stored = one_run(desk, url, workdir, to, c, args)
                    cpu = common.cpu_seconds(pids) - cpu
                    yield report(
                        kind,
                        to,
                        c,
                        label,
                        result,
                        stored,
                        ceiling,
                        pending,
                        cpu,
                        stored_tickets,
                        load,
                    )


def report(
    kind: str,
    to: str,
    c: int,
    label: str,
    result: loadgen.Result,
    stored: int,
    ceiling: loadgen.Result,
    pending: int,
    cpu: float,
    stored_tickets: int,
    load: str,
) -> Row:
    lost = max(0, result.ok - stored)
    ratio = result.rate / ceiling.rate * 100 if ceiling.rate else 0.0
    notes = [
        f"{ratio:.0f} % of ceiling {ceiling.rate:,.0f}/s",
        f"{result.non2xx} non-2xx",
        f"{result.errors} socket errors" if result.errors else "",
        f"{cpu / max(result.requests, 1) * 1000:.1f} CPU-ms/req (web+worker)",
        f"{pending} events still pending at start" if pending else "",
        f"{stored_tickets:,} tickets at start",
        f"LOST {lost} ACKNOWLEDGED WEBHOOKS" if lost else f"journal holds all {result.ok:,}",
    ]
    if lost:
        print(
            f"DATA LOSS: {kind} {to} c={c}: {result.ok} acknowledged, only {stored} in the journal",
            file=sys.stderr,
        )
    return Row(
        kind,
        "ingest",
        f"{to}, c={c}, {label} tickets",
        f"{result.rate:,.0f} webhooks/s",
        result.p50_ms,
        result.p99_ms,
        "; ".join(n for n in notes if n),
        load,
        failed=bool(lost),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--tickets", type=int, nargs="+", default=[0, 10_000, 100_000])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--to", choices=["new", "existing"], nargs="+", default=["new", "existing"])
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk duration of each run")
    parser.add_argument(
        "--pool-rate",
        type=float,
        default=4000.0,
        help="webhooks signed per second of run: the most a run can acknowledge per second",
    )
    parser.add_argument(
        "--drain", type=float, default=60.0, help="most seconds to wait for the worker between runs"
    )
    parser.add_argument(
        "--body", choices=["form", "json"], default="form", help="Flow Builder body"
    )
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="passed to `smsdesk serve` (repeatable)"
    )


def databases(choice: str) -> Sequence[str]:
    return ["sqlite", "postgres"] if choice == "both" else [choice]


def run(args: argparse.Namespace, workdir: Path) -> Iterator[Row]:
    for kind in databases(args.database):
        for tickets in args.tickets:
            yield from measure(kind, tickets, args, workdir)


def main() -> None:
    if not loadgen.have_wrk():
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    common.run_main(__doc__ or "", add_arguments, run)


if __name__ == "__main__":
    main()
