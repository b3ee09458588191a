"""End-to-end benchmark: webhook → ticket → confirmation received by a fake MessageBird.

Starts bench/fake_provider.py (it logs the time each message arrives) and
`smsdesk serve` pointed at it, then:

1. latency: once one text has been confirmed (the workers are up), signed
   webhooks from new numbers at a modest steady rate, one at a time from
   Python; each opens a ticket, whose confirmation the fake receives.
   Latency is the webhook's send time to the fake's receive time, matched
   by the customer's number.
2. sustained: the same at the worker's target rate (1,000 texts/s) for a
   while, from several connections at once: whether the desk takes the
   texts in, threads them and confirms them at that pace, with webhooks and
   the workers sharing the machine all along. The latency stays flat if it
   keeps up, and grows through the run if it falls behind.
3. throughput: a burst of webhooks from new numbers through wrk; the worker's
   sustained rate is confirmations per second between the 10th and the 90th
   percentile of their arrival times (start-up and tail left out).

    .venv/bin/python bench/e2e.py --database postgres --rate 20 --seconds 10 --burst 5000
    .venv/bin/python bench/e2e.py --database postgres --sustained 1000 --sustained-seconds 20
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import common
import ingest
import loadgen
from common import Row

# Connections the sustained phase sends from: each waits for its answer
# before its next webhook, so at 1,000/s a single one would fall behind as
# soon as answers take over a millisecond.
SENDERS = 16
DIAGNOSED = 20  # texts never confirmed whose state a row reports


def received(log: Path) -> dict[str, float]:
    """Recipient → when the fake received its (first) message."""
    times: dict[str, float] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            when, _reference, recipient = line.split("\t")
            times.setdefault(recipient, float(when))
    return times


def wait_for(log: Path, numbers: Sequence[str], timeout: float) -> dict[str, float]:
    """Wait (bounded) until the fake has a message for every number; returns what it has."""
    wanted = set(numbers)
    deadline = time.monotonic() + timeout
    while True:
        got = {n: t for n, t in received(log).items() if n in wanted}
        if len(got) == len(wanted) or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def steady(
    base_url: str,
    numbers: Sequence[str],
    rate: float,
    tag: str = "bench-e2e",
    connections: int = 1,
    answers: list[float] | None = None,
) -> dict[str, float]:
    """Post one signed webhook per number at `rate` per second; returns the send times.

    Each webhook has its moment (the i-th at start + i/rate) and goes then,
    or as soon as a connection is free: with one connection a slow answer
    holds up the next webhook, so faster rates spread them over several.
    `answers`, if given, gets how long each webhook took to be answered (ms).
    """
    lifetime = len(numbers) / rate + 600
    requests = [
        loadgen.webhook(base_url, number, f"{tag}-{n}", lifetime)
        for n, number in enumerate(numbers)
    ]
    done = loadgen.paced(base_url, requests, rate, connections)
    if answers is not None:
        answers += done.answer_ms
    return dict(zip(numbers, done.sent, strict=True))


def warm_up(desk: common.Desk, log: Path, timeout: float) -> None:
    """One text confirmed before anything is timed.

    `serve` answers before its worker processes have finished starting, and
    the first texts of a run waited for them: 80–240 ms more for the first
    four, which alone made the p99 of 200.
    """
    number = "+31629999999"
    steady(desk.url, [number], 1.0, tag="bench-warm-up")
    if not wait_for(log, [number], timeout):
        raise RuntimeError(f"the warm-up text was not confirmed in {timeout:g} s")


def latency(desk: common.Desk, log: Path, args: argparse.Namespace, kind: str) -> Row:
    numbers = [f"+3163{i:07d}" for i in range(int(args.rate * args.seconds))]
    load = common.load()
    sent = steady(desk.url, numbers, args.rate)
    got = wait_for(log, numbers, args.timeout)
    delays = sorted((got[n] - sent[n]) * 1000 for n in got)
    missing = len(numbers) - len(got)
    return Row(
        kind,
        "end to end",
        f"{args.rate:g} webhooks/s for {args.seconds:g} s, new numbers",
        f"{len(got)}/{len(numbers)} confirmed",
        common.percentile(delays, 50),
        common.percentile(delays, 99),
        f"webhook sent → confirmation at the fake provider; {missing} not confirmed in {args.timeout:g} s"
        if missing
        else "webhook sent → confirmation at the fake provider",
        load,
        failed=bool(missing),
    )


def sustained(
    desk: common.Desk, database_url: str, log: Path, args: argparse.Namespace, kind: str
) -> Row:
    """Texts at the worker's target rate for a while: does everything keep pace?"""
    rate, seconds = args.sustained, args.sustained_seconds
    numbers = [f"+3165{i:07d}" for i in range(int(rate * seconds))]
    load = common.load()
    spent = ingest.cpu_meter(desk, database_url)
    answers: list[float] = []
    sent = steady(
        desk.url, numbers, rate, tag="bench-sustained", connections=SENDERS, answers=answers
    )
    answers.sort()
    got = wait_for(log, numbers, args.timeout)
    web_cpu, work_cpu, db_cpu = spent()
    per_message = 1000 / max(len(got), 1)
    delay = {n: (got[n] - sent[n]) * 1000 for n in got}
    delays = sorted(delay.values())
    first, last_sent = min(sent.values()), max(sent.values())
    # Whether the latency grew through the run: the texts of its last tenth
    # against those of its first.
    order = sorted(got, key=sent.__getitem__)
    tenth = max(1, len(order) // 10)
    early = common.percentile(sorted(delay[n] for n in order[:tenth]), 50)
    late = common.percentile(sorted(delay[n] for n in order[-tenth:]), 50)
    missing = len(numbers) - len(got)
    notes = [
        f"sent at {len(sent) / max(last_sent - first, 1e-9):,.0f}/s from {SENDERS} connections",
        f"webhooks answered p50 {common.percentile(answers, 50):.1f} ms,"
        f" p99 {common.percentile(answers, 99):.1f} ms",
        f"p50 {early:.0f} ms in the first tenth of the run, {late:.0f} ms in the last",
        f"the last confirmed {max(got.values()) - last_sent:.1f} s after the last webhook"
        if got
        else "none confirmed",
        f"CPU-ms/message: web {web_cpu * per_message:.2f} + worker {work_cpu * per_message:.2f}"
        + (f"; PostgreSQL {db_cpu * per_message:.2f}" if db_cpu else ""),
    ]
    if missing:
        lost = [n for n in numbers if n not in got]
        notes.append(
            f"{missing} not confirmed in {args.timeout:g} s ({unconfirmed(database_url, lost)})"
        )
    return Row(
        kind,
        "worker",
        f"sustained: {rate:,.0f} webhooks/s for {seconds:g} s, new numbers",
        f"{len(got):,}/{len(numbers):,} confirmed",
        common.percentile(delays, 50),
        common.percentile(delays, 99),
        "; ".join(notes),
        load,
        failed=bool(missing),
    )


def unconfirmed(database_url: str, numbers: Sequence[str]) -> str:
    """Where the texts of numbers never confirmed stand, by the database: a note for the row."""
    listed = ", ".join(f"'{number}'" for number in numbers[:DIAGNOSED])
    events = {
        sender: (threaded, error)
        for sender, threaded, error in common.rows(
            database_url,
            "SELECT sender, processed_at IS NOT NULL, error FROM sms_inboundevent"
            f" WHERE sender IN ({listed})",
        )
    }
    confirmations = {
        phone: f"its confirmation {status} after {attempts} attempts {str(error)[:80]}".strip()
        for phone, status, attempts, error in common.rows(
            database_url,
            "SELECT c.phone, m.status, m.attempts, m.last_error FROM desk_message m"
            " JOIN desk_ticket t ON t.id = m.ticket_id JOIN desk_contact c ON c.id = t.contact_id"
            f" WHERE m.direction = 'out' AND c.phone IN ({listed})",
        )
    }
    states: Counter[str] = Counter()
    for number in numbers[:DIAGNOSED]:
        if number not in events:
            states["NOT IN THE JOURNAL"] += 1
            continue
        threaded, error = events[number]
        if error:
            states[f"threading failed: {str(error)[:80]}"] += 1
        elif not threaded:
            states["not threaded"] += 1
        else:
            states[confirmations.get(number, "threaded, no confirmation queued")] += 1
    shown = f"the first {DIAGNOSED}" if len(numbers) > DIAGNOSED else "of these"
    return f"{shown}: " + ", ".join(f"{n} {state}" for state, n in states.most_common())


def stored(database_url: str) -> int:
    return common.count(
        database_url, "SELECT count(*) FROM sms_inboundevent WHERE key LIKE 'bench-burst-%'"
    )


def throughput(
    desk: common.Desk, url: str, log: Path, args: argparse.Namespace, kind: str, workdir: Path
) -> Row:
    numbers = [f"+3164{i:07d}" for i in range(args.burst)]
    requests = workdir / "burst.txt"
    webhooks = ((n, f"bench-burst-{i}") for i, n in enumerate(numbers))
    loadgen.write_requests(requests, desk.url, webhooks, args.timeout + 600)
    load = common.load()
    pids = common.process_tree(desk.pid)
    cpu = common.cpu_seconds(pids)
    started = time.time()
    burst = loadgen.run_wrk(
        desk.url + "/webhook", 16, args.timeout, requests, until=lambda: stored(url) >= len(numbers)
    )
    got = wait_for(log, numbers, args.timeout)
    cpu = common.cpu_seconds(pids) - cpu
    times = sorted(got.values())
    notes = [
        f"burst ingested in {burst.seconds:.1f} s ({burst.non2xx} non-2xx)",
        f"all {len(got):,} confirmed {times[-1] - started:.1f} s after the first webhook"
        if len(got) == len(numbers)
        else f"only {len(got):,} of {len(numbers):,} confirmed in {args.timeout:g} s",
        f"{cpu / max(len(got), 1) * 1000:.1f} CPU-ms/message (web+worker)",
    ]
    low, high = common.percentile(times, 10), common.percentile(times, 90)
    sustained = 0.8 * len(times) / (high - low) if high > low else float("nan")
    return Row(
        kind,
        "worker",
        f"burst of {len(numbers):,} new numbers, c=16",
        f"{sustained:,.0f} confirmations/s",
        notes="; ".join(notes),
        load=load,
        failed=len(got) < len(numbers),
    )


def run(args: argparse.Namespace, workdir: Path) -> Iterator[Row]:
    for kind in ["sqlite", "postgres"] if args.database == "both" else [args.database]:
        with (
            common.database(kind, workdir, "e2e") as url,
            common.fake_provider(workdir) as (api_url, log),
            common.serve(
                url,
                workdir,
                args.serve_arg,
                MESSAGEBIRD_ACCESS_KEY="bench",
                MESSAGEBIRD_ORIGINATOR=common.ORIGINATOR,
                MESSAGEBIRD_API_URL=api_url,
            ) as desk,
        ):
            warm_up(desk, log, args.timeout)
            yield latency(desk, log, args, kind)
            if args.sustained > 0:
                yield sustained(desk, url, log, args, kind)
            yield throughput(desk, url, log, args, kind, workdir)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--rate", type=float, default=20.0, help="steady webhooks per second")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="how long the steady phase lasts"
    )
    parser.add_argument(
        "--sustained",
        type=float,
        default=1000.0,
        help="webhooks per second of the sustained phase (0 leaves it out)",
    )
    parser.add_argument(
        "--sustained-seconds", type=float, default=20.0, help="how long the sustained phase lasts"
    )
    parser.add_argument("--burst", type=int, default=5000, help="webhooks in the throughput burst")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="most seconds each phase may take"
    )
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="passed to `smsdesk serve`"
    )


def main() -> None:
    common.run_main(__doc__ or "", add_arguments, run)


if __name__ == "__main__":
    main()
