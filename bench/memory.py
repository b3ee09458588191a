"""Memory benchmark: RSS of the desk's processes after N and after 2N signed webhooks.

Starts `smsdesk serve` on a fresh database, replays N signed webhooks from
new numbers with wrk, reads VmRSS of every process in the server's tree
(web and worker, however `serve` arranges them), replays N more and reads it
again. A desk that does not leak stays flat (the target: within 10 %).

    .venv/bin/python bench/memory.py --database postgres --webhooks 100000
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator
from pathlib import Path

import common
import loadgen
from common import Row

NUMBERS = itertools.count()


def rss(desk: common.Desk) -> dict[str, int]:
    """VmRSS in kB of each process in the server's tree, keyed `pid command`."""
    sizes = {}
    for pid in common.process_tree(desk.pid):
        try:
            sizes[f"{pid} {common.cmdline(pid)}"] = common.rss_kb(pid)
        except OSError:
            continue  # it ended between the listing and the read
    return sizes


def phase(desk: common.Desk, url: str, n: int, args: argparse.Namespace, workdir: Path) -> int:
    """Replay n signed webhooks from new numbers; returns how many were acknowledged."""
    tag = f"bench-mem-{next(NUMBERS)}"
    requests = workdir / "memory.txt"
    webhooks = ((f"+3165{next(NUMBERS):07d}", f"{tag}-{i}") for i in range(n))
    loadgen.write_requests(requests, desk.url, webhooks, args.timeout + 600)

    def stored() -> int:
        return common.count(url, f"SELECT count(*) FROM sms_inboundevent WHERE key LIKE '{tag}-%'")

    result = loadgen.run_wrk(
        desk.url + "/webhook", args.concurrency, args.timeout, requests, until=lambda: stored() >= n
    )
    return result.ok


def run(args: argparse.Namespace, workdir: Path) -> Iterator[Row]:
    for kind in ["sqlite", "postgres"] if args.database == "both" else [args.database]:
        with (
            common.database(kind, workdir, "memory") as url,
            common.serve(url, workdir, args.serve_arg) as desk,
        ):
            load = common.load()
            acked = phase(desk, url, args.webhooks, args, workdir)
            first = rss(desk)
            acked += phase(desk, url, args.webhooks, args, workdir)
            second = rss(desk)
            before, after = sum(first.values()), sum(second.values())
            growth = (after - before) / before * 100 if before else float("nan")
            per_process = ", ".join(
                f"{name}: {first.get(name, 0) / 1024:.0f} → {size / 1024:.0f} MB"
                for name, size in second.items()
            )
            yield Row(
                kind,
                "memory",
                f"RSS after {args.webhooks:,} → {2 * args.webhooks:,} webhooks",
                f"{before / 1024:.0f} → {after / 1024:.0f} MB ({growth:+.1f} %)",
                notes=f"{acked:,} acknowledged; {per_process}",
                load=load,
                failed=acked < 2 * args.webhooks,
            )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--webhooks", type=int, default=100_000, help="webhooks per phase")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=1200.0, help="most seconds per phase")
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="passed to `smsdesk serve`"
    )


def main() -> None:
    common.run_main(__doc__ or "", add_arguments, run)


if __name__ == "__main__":
    main()
