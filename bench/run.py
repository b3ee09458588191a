"""Run every smsdesk benchmark and print one results table (see docs/performance.md).

    .venv/bin/python bench/run.py --quick                    # seconds: SQLite, tiny counts
    .venv/bin/python bench/run.py                            # everything, both databases
    .venv/bin/python bench/run.py --database postgres --only ingest
    .venv/bin/python bench/run.py --only live                # live updates, 200 SSE clients
    .venv/bin/python bench/run.py --markdown docs/performance.md
    .venv/bin/python bench/run.py --set ingest.seconds=5 --set memory.webhooks=20000
    .venv/bin/python bench/run.py --only sample --sample-dir ~/src/customer-support-guide

With --markdown, the table goes between the `results:start` and `results:end`
markers of that file (or makes up the whole file if it has none). Exits 1 if
any run lost an acknowledged webhook or left a message unconfirmed.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import common
import e2e
import ingest
import live
import loadgen
import memory
import sample
from common import Row

# "sample" runs only with --sample-dir and Node installed; otherwise it says why and is skipped.
PARTS = ("ingest", "e2e", "inbox", "memory", "live", "sample")
INBOX = common.REPO / "bench" / "inbox.py"
# inbox.py prints `  <label> <p50> <p99> <max> <CPU ms/req> <KB>` per page.
INBOX_LINE = re.compile(r"^  (\S.*?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$")
START, END = "<!-- results:start -->", "<!-- results:end -->"

# Overrides for --quick: every code path, seconds not minutes.
QUICK: dict[str, dict[str, object]] = {
    "ingest": {
        "tickets": [200],
        "concurrency": [16],
        "seconds": 1.0,
        "pool_rate": 2000.0,
        "drain": 10.0,
    },
    "e2e": {
        "rate": 10.0,
        "seconds": 2.0,
        "sustained": 100.0,
        "sustained_seconds": 2.0,
        "burst": 200,
        "timeout": 60.0,
    },
    "memory": {"webhooks": 500, "timeout": 60.0},
    "live": {
        "rate": [5.0],
        "seconds": 2.0,
        "clients": [0, 20],
        "load_seconds": 1.0,
        "samples": 10,
        "timeout": 30.0,
    },
    "sample": {"tickets": [100], "concurrency": [16], "seconds": 1.0, "admin_samples": 3},
}


def options(
    add_arguments: Callable[[argparse.ArgumentParser], None], part: str, args: argparse.Namespace
) -> argparse.Namespace:
    """A part's own defaults, then --quick's overrides, then the shared options."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    opts = parser.parse_args([])
    for name, value in (QUICK.get(part, {}) if args.quick else {}).items():
        setattr(opts, name, value)
    for setting in args.set:
        target, _, value = setting.partition("=")
        if target.startswith(f"{part}."):
            name = target.split(".", 1)[1].replace("-", "_")
            if not hasattr(opts, name):
                raise SystemExit(f"--set {setting}: {part} has no option {name}")
            setattr(opts, name, ast.literal_eval(value))
    opts.database = args.database
    opts.serve_arg = args.serve_arg
    if part == "sample" and args.sample_dir:
        opts.dir = args.sample_dir
    return opts


def inbox(args: argparse.Namespace) -> Iterator[Row]:
    """bench/inbox.py's figures, parsed from its printed table."""
    if not INBOX.exists():
        return
    engines = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    for engine in engines:
        cmd = [sys.executable, str(INBOX), "--engine", engine]
        if args.quick:
            cmd += ["--tickets", "500", "--messages", "2", "--samples", "10", "--timeout", "120"]
        load = common.load()
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=common.REPO, timeout=3600)
        rows = [m for line in done.stdout.splitlines() if (m := INBOX_LINE.match(line))]
        scale = "500 tickets × 2 messages" if args.quick else "100k tickets × 10 messages"
        for m in rows:
            yield Row(
                engine,
                "inbox",
                f"{m[1]}, {scale}",
                f"{float(m[5]):.1f} CPU-ms/req",
                float(m[2]),
                float(m[3]),
                f"sequential GETs; max {m[4]} ms; {m[6]} KB",
                load,
            )
        if done.returncode != 0 or not rows:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            yield Row(engine, "inbox", "bench/inbox.py", "failed", notes=tail[0], failed=True)


def run(args: argparse.Namespace, workdir: Path) -> Iterator[Row]:
    parts: dict[str, Callable[[], Iterator[Row]]] = {
        "ingest": lambda: ingest.run(options(ingest.add_arguments, "ingest", args), workdir),
        "e2e": lambda: e2e.run(options(e2e.add_arguments, "e2e", args), workdir),
        "inbox": lambda: inbox(args),
        "memory": lambda: memory.run(options(memory.add_arguments, "memory", args), workdir),
        "live": lambda: live.run(options(live.add_arguments, "live", args), workdir),
        "sample": lambda: sample.run(options(sample.add_arguments, "sample", args), workdir),
    }
    for name in args.only:
        try:
            yield from parts[name]()
        except Exception as exc:  # noqa: BLE001 - one broken part must not hide the others' figures
            traceback.print_exc()
            yield Row(
                args.database,
                name,
                "",
                "failed",
                notes=f"{type(exc).__name__}: {exc}"[:300],
                failed=True,
            )


def header(started: str, finished: str) -> str:
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=common.REPO
    ).stdout.strip()
    facts = "; ".join(f"{k} {v}" for k, v in common.machine().items())
    return (
        f"Taken {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} at commit {commit or '?'}; "
        f"{facts}; load average {started} before, {finished} after."
    )


def write_markdown(file: Path, text: str) -> None:
    block = f"{START}\n{text}\n{END}"
    old = file.read_text() if file.exists() else ""
    if START in old and END in old:
        before, rest = old.split(START, 1)
        block = before + block + rest.split(END, 1)[1]
    file.write_text(block if block.endswith("\n") else block + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a seconds-long smoke run, SQLite only"
    )
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"])
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PART.OPTION=VALUE",
        help="override one part's option, e.g. ingest.seconds=5 or ingest.tickets=[0,10000]",
    )
    parser.add_argument("--markdown", type=Path, help="also write the table into this file")
    parser.add_argument(
        "--sample-dir",
        help="a checkout of the NodeJS sample smsdesk started from, run beside it (needs node)",
    )
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="passed to `smsdesk serve` (repeatable)"
    )
    args = parser.parse_args()
    if args.database is None:
        args.database = "sqlite" if args.quick else "both"
    elif args.quick and args.database != "sqlite":
        parser.error("--quick runs on SQLite only")
    if not loadgen.have_wrk():
        raise SystemExit("wrk is missing: apt-get install -y wrk (or `make bench-smoke`)")

    started = common.load()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="smsdesk-bench-") as tmp:
        for row in run(args, Path(tmp)):
            rows.append(row)
            print(common.format_row(row), flush=True)  # progress, long runs
    text = header(started, common.load())
    print(f"\n{text}\n\n{common.table(rows)}")
    if args.markdown:
        write_markdown(args.markdown, f"{text}\n\n{common.table(rows, markdown=True)}")
    failed = [row for row in rows if row.failed]
    for row in failed:
        print(f"FAILED: {common.format_row(row)}", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
