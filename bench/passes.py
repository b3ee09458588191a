"""Worker pass benchmark: what one pass of the worker costs, by batch size.

A steady flow reaches the worker a few texts at a time, so what a pass
costs whatever its size matters as much as what each text costs. This
fills a fresh database with journal events (half from new numbers, half
to tickets that exist, as bench/worker.py), then runs passes in this
process: `worker.process_inbound(batch)` threads a batch and
`worker.send_due()` sends its confirmations through the simulator. It
prints the median CPU milliseconds of the two halves of a pass, and per
event.

CPU time on a shared machine moves with its load. With --callgrind the
passes run twice under valgrind's callgrind, with P and 4P passes over
the same filled journal, and the instructions per pass are the difference
over 3P: the same for the same code and inputs, whatever else the machine
does, and free of start-up and filling.

    .venv/bin/python bench/passes.py --batch 20                 # SQLite
    .venv/bin/python bench/passes.py --postgres --batch 1 --passes 200
    .venv/bin/python bench/passes.py --postgres --batch 20 --passes 20 --callgrind

A PostgreSQL database it creates (smsdesk_bench_passes_*) is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import common
import worker as worker_bench

WARM_UP = 3  # passes left out of the median: imports, connections, caches


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--batch", type=int, default=20, help="events threaded per pass")
    parser.add_argument("--passes", type=int, default=40, help="passes measured (P)")
    parser.add_argument(
        "--callgrind", action="store_true", help="count instructions under valgrind instead"
    )
    parser.add_argument("--database-url", help=argparse.SUPPRESS)  # the child's database
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)  # the child's passes
    return parser.parse_args()


def child(args: argparse.Namespace) -> None:
    """Fill the journal for 4P + warm-up passes, run `--count` of them; print the CPU times."""
    # The desk as this process imports it (PYTHONPATH may name another tree),
    # on this database, whatever the shell has set; sends go to the simulator.
    for name in [n for n in os.environ if n.startswith(("SMSDESK_", "MESSAGEBIRD_"))]:
        del os.environ[name]
    os.environ.update(
        DATABASE_URL=args.database_url,
        DJANGO_SETTINGS_MODULE="smsdesk.settings",
        SMSDESK_LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    from django.conf import settings

    from smsdesk.desk import worker

    settings.SMSDESK_PROVIDER = "simulator"
    total = (4 * args.passes + WARM_UP) * args.batch
    existing = worker_bench.fill_existing(max(total // 4, 1))
    worker_bench.fill_events(total, existing, first=0, seed=1)
    threading, sending = [], []
    for _ in range(args.count):
        started = time.process_time()
        threaded = worker.process_inbound(args.batch)
        middle = time.process_time()
        worker.send_due()
        threading.append((middle - started) * 1000)
        sending.append((time.process_time() - middle) * 1000)
        if threaded != args.batch:
            raise SystemExit(f"a pass threaded {threaded} events, not {args.batch}")
    import smsdesk

    print(f"desk {Path(smsdesk.__file__).parent}")
    print(f"CPU {' '.join(f'{t:.3f}/{s:.3f}' for t, s in zip(threading, sending, strict=True))}")


def run_child(args: argparse.Namespace, database_url: str, count: int) -> str:
    """The child's output, and valgrind's summary when counting instructions."""
    command = [sys.executable, __file__, "--batch", str(args.batch), "--passes", str(args.passes)]
    command += ["--database-url", database_url, "--count", str(count)]
    if args.callgrind:
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the passes failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done.stdout + done.stderr


def instructions(output: str) -> int:
    found = re.search(r"Collected : (\d+)", output)
    if found is None:
        raise SystemExit(f"no instruction count from valgrind:\n{output[-3000:]}")
    return int(found.group(1))


@contextmanager
def migrated(kind: str, workdir: Path, tag: str) -> Iterator[str]:
    with common.database(kind, workdir, tag) as url:
        common.manage(url, "migrate", "--verbosity", "0")
        yield url


def main() -> None:
    args = parse_args()
    if args.count is not None:
        child(args)
        return
    kind = "postgres" if args.postgres else "sqlite"
    print(f"passes of {args.batch} events, {'PostgreSQL' if args.postgres else 'SQLite'}")
    with tempfile.TemporaryDirectory(prefix="smsdesk-bench-passes-") as tmp:
        if args.callgrind:
            # Each run fills the same journal, in a database of its own.
            counts = []
            for count in (args.passes, 4 * args.passes):
                with migrated(kind, Path(tmp), f"passes{count}") as url:
                    output = run_child(args, url, WARM_UP + count)
                    counts.append(instructions(output))
            print(re.findall(r"^desk .*$", output, re.MULTILINE)[0])
            per_pass = (counts[1] - counts[0]) / (3 * args.passes)
            print(
                f"instructions per pass: {per_pass / 1e6:,.2f} million,"
                f" {per_pass / args.batch / 1e6:,.3f} million per event"
                f" ({counts[0]:,} for {args.passes} passes, {counts[1]:,} for {4 * args.passes})"
            )
            return
        with migrated(kind, Path(tmp), "passes") as url:
            output = run_child(args, url, WARM_UP + args.passes)
    print(re.findall(r"^desk .*$", output, re.MULTILINE)[0])
    times = [pair.split("/") for pair in output.split("CPU ", 1)[1].split()][WARM_UP:]
    threading = statistics.median(float(t) for t, _ in times)
    sending = statistics.median(float(s) for _, s in times)
    print(
        f"median CPU-ms per pass over {len(times)} passes: threading {threading:.2f},"
        f" sending {sending:.2f}; per event {(threading + sending) / args.batch:.3f}"
    )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
