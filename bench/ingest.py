"""Ingest benchmark: how many signed webhooks `smsdesk serve` acknowledges per second.

For each database and each number of tickets already stored, starts the real
desk on a fresh database and, at each concurrency, measures the same server's
trivial response (GET /healthz: the machine's ceiling), then replays signed
webhooks with wrk: new numbers (a ticket each) and one existing ticket. After
every run it counts the journal rows of that run: an acknowledged webhook
that is not stored is data loss, reported loudly and failing the run.

    .venv/bin/python bench/ingest.py --database sqlite --tickets 0 --concurrency 16
    .venv/bin/python bench/ingest.py --database both          # the full matrix (~15 min)

With --source, it compares source trees instead (before/after a change): one
desk per tree, side by side, each on its own fresh database, and their runs
alternate, round after round, so that both meet the same machine load. A
tree is a folder holding the `smsdesk` package (a `git worktree`, or
`git archive <commit> | tar -x`); "." is the working tree.

    .venv/bin/python bench/ingest.py --source before=/tmp/before --source after=. \
        --tickets 0 --concurrency 64 --to new --seconds 4 --rounds 4
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
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
                web, _ = split_processes(common.process_tree(desk.pid))
                before = common.cpu_seconds(web)
                ceiling = loadgen.run_wrk(
                    desk.url + desk.trivial, c, args.seconds, None, args.wrk_threads
                )
                ceiling_cpu = (common.cpu_seconds(web) - before) / max(ceiling.requests, 1)
                if tickets == args.tickets[0]:
                    yield Row(
                        kind,
                        "ceiling",
                        f"GET {desk.trivial}, c={c}",
                        f"{ceiling.rate:,.0f} req/s",
                        ceiling.p50_ms,
                        ceiling.p99_ms,
                        "; ".join([*desk.notes, f"web {ceiling_cpu * 1000:.2f} CPU-ms/req"]),
                    )
                for to in args.to:
                    pending = drain(url, args.drain)
                    stored_tickets = common.count(url, "SELECT count(*) FROM desk_ticket")
                    load = common.load()
                    run = measured_run(desk, url, workdir, to, c, args)
                    yield report(kind, to, c, label, run, ceiling, pending, stored_tickets, load)


@dataclass
class Run:
    """One replay: wrk's result, the rows it stored, CPU seconds, and the worker's catch-up."""

    result: loadgen.Result
    stored: int
    web_cpu: float  # the web processes (and `serve` itself) during the replay
    worker_cpu: float  # the worker during the replay
    database_cpu: float  # PostgreSQL's server processes for this database (0 on SQLite)
    backlog: int  # events not yet threaded when the last answer came
    catch_up: float | None  # seconds from then until none was pending (None: not in time)


def measured_run(
    desk: common.Desk,
    database_url: str,
    workdir: Path,
    to: str,
    connections: int,
    args: argparse.Namespace,
) -> Run:
    spent = cpu_meter(desk, database_url)
    result, stored = one_run(desk, database_url, workdir, to, connections, args)
    web_cpu, work_cpu, db_cpu = spent()
    backlog = common.count(database_url, PENDING)
    start = time.monotonic()
    try:
        done = common.wait_until(
            "the worker", lambda: common.count(database_url, PENDING) == 0, args.drain, 0.05
        )
        catch_up: float | None = done - start
    except TimeoutError:
        catch_up = None
    return Run(result, stored, web_cpu, work_cpu, db_cpu, backlog, catch_up)


def cpu_meter(desk: common.Desk, database_url: str) -> Callable[[], tuple[float, float, float]]:
    """Start counting; the function returned gives the CPU seconds spent since by
    the web processes (and `serve` itself), the workers and PostgreSQL's processes."""
    web, work = split_processes(common.process_tree(desk.pid))
    before = [common.cpu_seconds(pids) for pids in (web, work)]
    backends = {pid: common.cpu_seconds([pid]) for pid in database_processes(database_url)}

    def spent() -> tuple[float, float, float]:
        web_cpu, work_cpu = (
            common.cpu_seconds(pids) - was for pids, was in zip((web, work), before, strict=True)
        )
        # A server process that started meanwhile spent all its CPU since.
        db_cpu = sum(
            common.cpu_seconds([pid]) - backends.get(pid, 0.0)
            for pid in database_processes(database_url)
        )
        return web_cpu, work_cpu, db_cpu

    return spent


def database_processes(database_url: str) -> list[int]:
    """PostgreSQL's server processes for this database now; none for SQLite (in-process)."""
    if database_url.startswith("sqlite"):
        return []
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(f"{common.PG_SERVER}/postgres", autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", [name]
        ).fetchall()
    return [int(row[0]) for row in rows]


def split_processes(pids: Sequence[int]) -> tuple[list[int], list[int]]:
    """The desk's process tree as (web processes and `serve` itself, the worker)."""
    web, work = [], []
    for pid in pids:
        try:
            (work if " worker" in common.cmdline(pid) else web).append(pid)
        except OSError:
            continue
    return web, work


def report(
    kind: str,
    to: str,
    c: int,
    label: str,
    run: Run,
    ceiling: loadgen.Result | None,
    pending: int,
    stored_tickets: int,
    load: str,
    source: str = "",
) -> Row:
    result = run.result
    lost = max(0, result.ok - run.stored)
    ratio = result.rate / ceiling.rate * 100 if ceiling and ceiling.rate else 0.0
    per_request = 1000 / max(result.requests, 1)
    caught_up = (
        f"{run.backlog:,} events left to thread after the run, done in {run.catch_up:.1f} s"
        if run.catch_up is not None
        else f"{run.backlog:,} events left to thread after the run, not done in time"
    )
    notes = [
        f"{ratio:.0f} % of ceiling {ceiling.rate:,.0f}/s" if ceiling else "",
        f"{result.non2xx} non-2xx",
        f"{result.errors} socket errors" if result.errors else "",
        f"{(run.web_cpu + run.worker_cpu) * per_request:.2f} CPU-ms/req (web+worker)",
        f"web {run.web_cpu * per_request:.2f} + worker {run.worker_cpu * per_request:.2f}",
        f"PostgreSQL {run.database_cpu * per_request:.2f}" if run.database_cpu else "",
        caught_up,
        f"{pending} events still pending at start" if pending else "",
        f"{stored_tickets:,} tickets at start",
        f"LOST {lost} ACKNOWLEDGED WEBHOOKS" if lost else f"journal holds all {result.ok:,}",
    ]
    if lost:
        print(
            f"DATA LOSS: {kind} {to} c={c}: {result.ok} acknowledged, "
            f"only {run.stored} in the journal",
            file=sys.stderr,
        )
    return Row(
        kind,
        "ingest",
        f"{source + ': ' if source else ''}{to}, c={c}, {label} tickets",
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
    parser.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="compare source trees, side by side (repeatable; see the module's help)",
    )
    parser.add_argument("--rounds", type=int, default=4, help="rounds of a --source comparison")


def databases(choice: str) -> Sequence[str]:
    return ["sqlite", "postgres"] if choice == "both" else [choice]


def run(args: argparse.Namespace, workdir: Path) -> Iterator[Row]:
    for kind in databases(args.database):
        for tickets in args.tickets:
            if args.source:
                yield from compare(kind, tickets, args, workdir)
            else:
                yield from measure(kind, tickets, args, workdir)


def compare(kind: str, tickets: int, args: argparse.Namespace, workdir: Path) -> Iterator[Row]:
    """One desk per --source tree, runs alternating; a row per run, then the medians."""
    label = f"{tickets // 1000}k" if tickets >= 1000 else str(tickets)
    runs: dict[tuple[str, str, int], list[Run]] = {}
    with ExitStack() as stack:
        desks = []
        for source in args.source:
            name, _, folder = source.partition("=")
            env = {"PYTHONPATH": str(Path(folder).resolve())} if folder not in ("", ".") else {}
            url = stack.enter_context(common.database(kind, workdir, f"ingest_{name}_{tickets}"))
            seed(url, tickets)
            desk = stack.enter_context(common.serve(url, workdir, args.serve_arg, **env))
            first = workdir / "first.txt"
            loadgen.write_requests(first, desk.url, [(EXISTING, "bench-first")], 600, args.body)
            loadgen.run_wrk(desk.url + "/webhook", 1, 1, first)
            desks.append((name, url, desk))
        for round_ in range(args.rounds):
            # Alternate who goes first, so neither always follows the other.
            for name, url, desk in desks if round_ % 2 == 0 else desks[::-1]:
                for c in args.concurrency:
                    for to in args.to:
                        pending = drain(url, args.drain)
                        stored_tickets = common.count(url, "SELECT count(*) FROM desk_ticket")
                        load = common.load()
                        one = measured_run(desk, url, workdir, to, c, args)
                        runs.setdefault((name, to, c), []).append(one)
                        yield report(
                            kind, to, c, label, one, None, pending, stored_tickets, load, name
                        )
    for (name, to, c), done in runs.items():
        yield median_row(kind, f"{name}: {to}, c={c}, {label} tickets", done)


def median_row(kind: str, conditions: str, runs: list[Run]) -> Row:
    def median(figure: Callable[[Run], float]) -> float:
        return statistics.median(figure(one) for one in runs)

    def per_request(cpu: Callable[[Run], float]) -> float:
        return median(lambda one: cpu(one) / max(one.result.requests, 1) * 1000)

    catch_up = [one.catch_up for one in runs if one.catch_up is not None]
    notes = [
        f"median of {len(runs)} alternating runs",
        f"web {per_request(lambda one: one.web_cpu):.2f} CPU-ms/req",
        f"worker {per_request(lambda one: one.worker_cpu):.2f}",
        f"PostgreSQL {per_request(lambda one: one.database_cpu):.2f}" if kind == "postgres" else "",
        f"{median(lambda one: one.backlog):,.0f} left to thread after a run"
        + (f", done in {statistics.median(catch_up):.1f} s" if catch_up else ""),
        f"{sum(max(0, one.result.ok - one.stored) for one in runs)} acknowledged but missing",
    ]
    return Row(
        kind,
        "ingest",
        conditions,
        f"{median(lambda one: one.result.rate):,.0f} webhooks/s",
        median(lambda one: one.result.p50_ms),
        median(lambda one: one.result.p99_ms),
        "; ".join(n for n in notes if n),
        failed=any(one.result.ok > one.stored for one in runs),
    )


def main() -> None:
    if not loadgen.have_wrk():
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    common.run_main(__doc__ or "", add_arguments, run)


if __name__ == "__main__":
    main()
