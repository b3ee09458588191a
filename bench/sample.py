"""The NodeJS sample smsdesk started from, under the same load, for comparison (optional).

smsdesk began as MessageBird's "SMS Customer Support" sample
(messagebirdguides/customer-support-guide: Express, tickets in mongo-mock's
in-memory store). Its code is not part of this repository: point --dir at a
checkout of it. Needs `node` and `npm` on PATH; without them, or without
--dir, it prints why and exits 0, so nothing else ever depends on it.

    .venv/bin/python bench/sample.py --dir ~/src/customer-support-guide
    .venv/bin/python bench/sample.py --dir PATH --tickets 10000 --concurrency 16   # slow

For each ticket count and concurrency, a fresh `node index.js` (the sample
keeps everything in memory, so a restart is an empty store) is filled with
that many tickets by one webhook per number, then takes the same replayed
Flow Builder form webhooks as bench/ingest.py: to one existing ticket, then
from new numbers. Then sequential GET /admin, and RSS of the node process.

What runs around the sample, and why:
- `index.js` listens on 8080, fixed; a `--require`d preload moves that
  listen to a free port, so a busy 8080 or two runs side by side do not
  collide. The same preload renders /admin without a layout when the
  checkout has none (see PRELOAD): as installed today the sample's /admin
  is otherwise a 500. Nothing else in the sample changes.
- MESSAGEBIRD_API_KEY is a dummy (a `.env` in the checkout does not override
  it): the confirmation SMS the sample sends for each new ticket fails, and
  never reaches a real number even with internet access. The sample answers
  the webhook before it stores or sends anything, so a failing send does not
  delay the answer; it does take CPU (a DNS lookup, an error logged), less
  than a real HTTPS send would. The failures are counted from its log.
- NODE_ENV=production, as deployed: Express caches the compiled view.
- mongo-mock, as shipped, waits a random 0–400 ms before each operation
  (its `max_delay`). Webhook answers do not wait for it; /admin does.
- The sample answers "OK" before storing, so its rate is answers per second;
  "stored" counts the webhooks its log says were stored after the run (one
  "created ticket" or "updated ticket" line each), and the /admin page is
  read to count the messages that survived.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import common
import loadgen
from common import Row

DATABASE = "sample (node, in-memory)"
NUMBERS = itertools.count(1)  # +3163xxxxxxx: distinct across every run of this process
# Loaded with `node --require` before index.js. It moves `app.listen(8080)`
# to a free port. And express-handlebars 3.1.0 (May 2019, a minor release)
# made "main" the default layout, which the sample, written against 3.0.0,
# does not have: its ^3.0.0 now installs 3.1.0 and every /admin is a 500
# (ericf/express-handlebars#252). Without a layout file, the view is
# rendered with none, as 3.0.0 did.
PRELOAD = """\
const fs = require("fs");
const net = require("net");
const path = require("path");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (port, ...rest) {
  if (port === 8080) port = Number(process.env.SMSDESK_BENCH_SAMPLE_PORT);
  return listen.call(this, port, ...rest);
};
const hbs = require(require.resolve("express-handlebars", { paths: [process.cwd()] }));
const renderView = hbs.ExpressHandlebars.prototype.renderView;
hbs.ExpressHandlebars.prototype.renderView = function (view, options, callback) {
  const layouts = this.layoutsDir || path.join(path.dirname(view), "layouts");
  if (this.defaultLayout === "main" && !fs.existsSync(path.join(layouts, "main" + this.extname))) {
    this.defaultLayout = undefined;
    console.log("NO_LAYOUT");
  }
  return renderView.call(this, view, options, callback);
};
"""
NO_LAYOUT = "smsdesk-bench: no layouts/main, rendering without a layout"


def skip_reason(folder: Path | None) -> str | None:
    """Why the sample cannot run here, or None when it can."""
    if folder is None:
        return "no checkout of the sample given (--dir PATH, or --set sample.dir='PATH')"
    if not (folder / "index.js").is_file():
        return f"{folder} holds no index.js"
    if shutil.which("node") is None:
        return "node not found"
    if not (folder / "node_modules").is_dir() and shutil.which("npm") is None:
        return "npm not found (needed once, for its node_modules)"
    return None


def install(folder: Path) -> None:
    if not (folder / "node_modules").is_dir():
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund"], cwd=folder, check=True, timeout=600
        )


@dataclass
class Sample:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    seen: int = 0  # bytes of the log already counted
    stored: int = 0  # "created ticket" and "updated ticket" lines
    created: int = 0  # "created ticket" lines: tickets opened
    failed_sends: int = 0  # confirmation SMS the sample could not send
    no_layout: bool = False  # the preload dropped express-handlebars' missing layout

    def count_log(self) -> int:
        """Reads the log's new lines; returns how many webhooks the sample has stored so far."""
        with self.log.open("rb") as log:
            log.seek(self.seen)
            chunk = log.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line may be half written
        self.seen += len(complete)
        for line in complete.splitlines():
            if line.startswith((b"created ticket", b"updated ticket")):
                self.stored += 1
                self.created += line.startswith(b"created")
            elif line.startswith(b"Error") or b"ENOTFOUND" in line[:80]:
                self.failed_sends += 1
            elif line == NO_LAYOUT.encode():
                self.no_layout = True
        return self.stored


@contextmanager
def start(folder: Path, workdir: Path) -> Iterator[Sample]:
    """`node index.js` on a free port, answering; stopped with its process group."""
    port = common.free_port()
    url = f"http://127.0.0.1:{port}"
    preload = workdir / "sample-port.js"
    preload.write_text(PRELOAD.replace("NO_LAYOUT", NO_LAYOUT))
    log = workdir / f"sample-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESSAGEBIRD_")}
    env.update(
        MESSAGEBIRD_API_KEY="bench-dummy-key",
        MESSAGEBIRD_ORIGINATOR=common.ORIGINATOR,
        SMSDESK_BENCH_SAMPLE_PORT=str(port),
        PORT=str(port),
        NODE_ENV="production",
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["node", "--require", str(preload), "index.js"],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    sample = Sample(url, proc, log)

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"node index.js exited:\n{log.read_text()[-3000:]}")
        return common.get_status(url + "/admin") == 200

    try:
        common.wait_until("the sample to answer", answers, timeout=60)
        yield sample
    finally:
        common.stop(proc)


def replay(
    sample: Sample,
    workdir: Path,
    senders: Sequence[str],
    connections: int,
    seconds: float,
    tag: str,
    until: Callable[[], bool] | None = None,
) -> loadgen.Result:
    """One webhook per sender, replayed by wrk (the signature header is ignored by the sample)."""
    requests = workdir / "sample-requests.txt"
    webhooks = ((sender, f"{tag}-{i}") for i, sender in enumerate(senders))
    loadgen.write_requests(requests, sample.url, webhooks, seconds + 600)
    return loadgen.run_wrk(sample.url + "/webhook", connections, seconds, requests, until=until)


def settle(sample: Sample, expected: int, timeout: float) -> float | None:
    """Seconds until the sample has stored `expected` webhooks in all (None: not in time)."""
    start_at = time.monotonic()
    try:
        done = common.wait_until(
            "the sample to store", lambda: sample.count_log() >= expected, timeout, 0.05
        )
    except TimeoutError:
        return None
    return done - start_at


def sends_settle(sample: Sample, timeout: float = 5) -> None:
    """Waits (bounded) until every opened ticket's confirmation send has failed in the log."""

    def done() -> bool:
        sample.count_log()
        return sample.failed_sends >= sample.created

    try:
        common.wait_until("the confirmation sends to fail", done, timeout, 0.05)
    except TimeoutError:
        pass  # some lookups of rest.messagebird.com are still queued: say so, go on


def admin_page(sample: Sample) -> bytes:
    with urllib.request.urlopen(sample.url + "/admin", timeout=120) as response:
        return bytes(response.read())


def new_numbers(n: int) -> list[str]:
    return [f"+3163{next(NUMBERS):07d}" for _ in range(n)]


def fill(sample: Sample, workdir: Path, tickets: int, args: argparse.Namespace) -> list[str]:
    """Open `tickets` tickets, one webhook per new number; returns the numbers."""
    numbers = new_numbers(tickets)
    expected = sample.stored + tickets

    def stored() -> bool:
        return sample.count_log() >= expected

    # wrk runs its whole duration even when the replay is done: `until` ends it.
    replay(sample, workdir, numbers, 16, args.timeout, "fill", until=stored)
    if settle(sample, expected, args.timeout) is None:
        raise TimeoutError(f"the sample stored {sample.stored} of {tickets} tickets in time")
    sends_settle(sample)
    return numbers


def ingest_row(
    sample: Sample,
    workdir: Path,
    to: str,
    c: int,
    tickets: int,
    existing: str,
    args: argparse.Namespace,
) -> Row:
    load = common.load()
    pool = int(args.seconds * args.pool_rate)
    senders = [existing] * pool if to == "existing" else new_numbers(pool)
    tag = f"run-{next(NUMBERS)}"
    stored_before, failed_before = sample.stored, sample.failed_sends
    tickets_before = sample.created
    cpu_before = common.cpu_seconds(common.process_tree(sample.proc.pid))
    result = replay(sample, workdir, senders, c, args.seconds, tag)
    # wrk stops with requests in flight that the sample still takes: count those too.
    catch_up = settle(sample, stored_before + max(result.sent, result.ok), args.drain)
    cpu = common.cpu_seconds(common.process_tree(sample.proc.pid)) - cpu_before
    stored = sample.stored - stored_before
    notes = [
        f"{result.non2xx} non-2xx",
        f"{result.errors} socket errors" if result.errors else "",
        f"{cpu * 1000 / max(result.requests, 1):.2f} CPU-ms/req (node, until stored)",
        f"answers before storing: {stored:,} stored {catch_up:.1f} s after the last answer"
        if catch_up is not None
        else f"answers before storing: {stored:,} of {result.sent:,} stored, not done in time",
        f"{tickets_before:,} → {sample.created:,} tickets",
    ]
    if to == "existing":
        # Each webhook reads the ticket, waits, then writes its whole message
        # list back: concurrent ones overwrite each other's messages.
        kept = admin_page(sample).count(f"bench text {tag}-".encode())
        notes.append(f"/admin shows {kept:,} of the {stored:,} messages to this ticket")
    else:
        opened = sample.created - tickets_before
        sends_settle(sample)
        failed = sample.failed_sends - failed_before
        notes.append(
            f"{failed:,} of {opened:,} confirmation sends failed by then, the rest pending "
            "(dummy key, offline: a failed send costs the sample less CPU than a real one)"
        )
    return Row(
        DATABASE,
        "ingest",
        f"{to}, c={c}, {label(tickets)} tickets",
        f"{result.rate:,.0f} webhooks/s",
        result.p50_ms,
        result.p99_ms,
        "; ".join(n for n in notes if n),
        load,
    )


def admin_row(sample: Sample, tickets: int, args: argparse.Namespace) -> Row:
    load = common.load()
    pids = common.process_tree(sample.proc.pid)
    cpu_before = common.cpu_seconds(pids)
    times, size = [], 0
    for _ in range(args.admin_samples):
        began = time.perf_counter()
        size = len(admin_page(sample))
        times.append((time.perf_counter() - began) * 1000)
    cpu = (common.cpu_seconds(pids) - cpu_before) * 1000 / args.admin_samples
    times.sort()
    return Row(
        DATABASE,
        "admin page",
        f"GET /admin, {label(tickets)} tickets",
        f"{cpu:.1f} CPU-ms/req",
        common.percentile(times, 50),
        common.percentile(times, 99),
        f"{args.admin_samples} sequential GETs; max {times[-1]:.0f} ms; {size / 1024:,.0f} KB; "
        "every open ticket with all its messages on one page; "
        "includes mongo-mock's random 0–400 ms wait per operation"
        + ("; rendered without the layout the checkout lacks" if sample.no_layout else ""),
        load,
    )


def label(tickets: int) -> str:
    return f"{tickets // 1000}k" if tickets >= 1000 and tickets % 1000 == 0 else f"{tickets:,}"


def measure(folder: Path, tickets: int, args: argparse.Namespace, workdir: Path) -> Iterator[Row]:
    for i, c in enumerate(args.concurrency):
        with start(folder, workdir) as sample:
            idle = common.rss_kb(sample.proc.pid)
            numbers = fill(sample, workdir, max(tickets, 1), args)
            filled = common.rss_kb(sample.proc.pid)
            if i == 0:
                yield admin_row(sample, tickets, args)
            for to in args.to:
                yield ingest_row(sample, workdir, to, c, tickets, numbers[0], args)
            if i == 0:
                yield memory_row(
                    sample, len(numbers), c, idle, filled, sample.stored - len(numbers)
                )


def memory_row(sample: Sample, tickets: int, c: int, idle: int, filled: int, requests: int) -> Row:
    after = common.rss_kb(sample.proc.pid)
    per_ticket = (filled - idle) / max(tickets, 1)
    per_request = (after - filled) / max(requests, 1)
    return Row(
        DATABASE,
        "memory",
        f"RSS of node: start → {label(tickets)} tickets → {requests:,} more webhooks (c={c})",
        f"{idle / 1024:.0f} → {filled / 1024:.0f} → {after / 1024:.0f} MB",
        notes=f"{per_ticket:.2f} KB per ticket opened; {per_request:.2f} KB per later webhook; "
        "everything stays in the process's memory",
    )


def run(args: argparse.Namespace, workdir: Path) -> Iterator[Row]:
    folder = Path(args.dir).expanduser().resolve() if args.dir else None
    reason = skip_reason(folder)
    if reason is not None:
        print(f"sample: skipped: {reason}", flush=True)
        return
    assert folder is not None
    if not loadgen.have_wrk():
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    install(folder)
    for tickets in args.tickets:
        yield from measure(folder, tickets, args, workdir)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", help="a checkout of messagebirdguides/customer-support-guide")
    parser.add_argument(
        "--tickets",
        type=int,
        nargs="+",
        default=[100, 1000],
        help="tickets opened before the runs; 10000 works but fills slowly (minutes)",
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--to", choices=["existing", "new"], nargs="+", default=["existing", "new"])
    parser.add_argument("--seconds", type=float, default=3.0, help="wrk duration of each run")
    parser.add_argument(
        "--pool-rate", type=float, default=3000.0, help="webhooks built per second of run"
    )
    parser.add_argument("--admin-samples", type=int, default=20)
    parser.add_argument(
        "--drain", type=float, default=60.0, help="most seconds to wait for the sample to store"
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="most seconds to open the tickets"
    )


def main() -> None:
    common.run_main(__doc__ or "", add_arguments, run)


if __name__ == "__main__":
    main()
