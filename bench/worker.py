"""Worker benchmark: events threaded into tickets and confirmations sent, per second.

Fills a fresh database with N pending inbound events (half from new numbers,
each opening a ticket and owing a confirmation; half joining tickets that
already exist), starts bench/fake_provider.py, runs the real `smsdesk worker`
as a subprocess against both, and polls the database until the journal has
nothing pending and the outbox is empty. Prints events threaded/s,
confirmations sent/s, the worker's CPU seconds per 1,000 events (and the
PostgreSQL backend's), then the queries per event, counted in-process on a
small extra batch.

    .venv/bin/python bench/worker.py                     # 20,000 events, SQLite
    .venv/bin/python bench/worker.py --postgres          # a database smsdesk_bench_wk_*
    .venv/bin/python bench/worker.py -n 2000 --workers 2 --postgres

Bounded by --timeout (default 300 s); every process it starts is stopped at
the end, and a PostgreSQL database it created is dropped.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import common
import psycopg

REPO = Path(__file__).resolve().parents[1]
SMSDESK = REPO / ".venv" / "bin" / "smsdesk"
ORIGINATOR = "+3197010000000"
TICKS = os.sysconf("SC_CLK_TCK")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--events", type=int, default=20_000)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--workers", type=int, default=1, help="`smsdesk worker` processes")
    parser.add_argument("--existing", type=int, help="tickets already open (default N/4)")
    parser.add_argument("--queries", type=int, default=1000, help="events for the query count")
    parser.add_argument("--profile", help="run the worker under this command prefix")
    parser.add_argument("--timeout", type=float, default=300.0)
    return parser.parse_args()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def desk_env(database_url: str, api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMSDESK_", "MESSAGEBIRD_"))}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(
        DATABASE_URL=database_url,
        MESSAGEBIRD_ACCESS_KEY="bench",
        MESSAGEBIRD_ORIGINATOR=ORIGINATOR,
        MESSAGEBIRD_API_URL=api_url,
        SMSDESK_LOG_LEVEL="WARNING",
    )
    return env


def setup_django(env: dict[str, str]) -> None:
    """This process talks to the same database through the desk's own models."""
    for name in ("DATABASE_URL", "MESSAGEBIRD_ACCESS_KEY", "MESSAGEBIRD_ORIGINATOR"):
        os.environ[name] = env[name]
    os.environ["MESSAGEBIRD_API_URL"] = env["MESSAGEBIRD_API_URL"]
    os.environ["DJANGO_SETTINGS_MODULE"] = "smsdesk.settings"
    sys.path.insert(0, str(REPO))
    import django

    django.setup()


def raw(sender: str, n: int) -> dict[str, object]:
    body = f"originator={sender}&recipient={ORIGINATOR}&payload=bench+{n}&message_id=bench-{n}"
    return {
        "method": "POST",
        "path": "/webhook",
        "query": "",
        "content_type": "application/x-www-form-urlencoded",
        "body": body,
    }


def fill_existing(count: int) -> list[str]:
    """`count` contacts with an open ticket and one earlier message each."""
    from smsdesk.desk.models import Contact, Message, Ticket, new_ref

    phones = [f"+3161{n:07d}" for n in range(count)]
    earlier = datetime.now(UTC) - timedelta(days=1)
    Contact.objects.bulk_create([Contact(phone=p, created=earlier) for p in phones])
    contacts = Contact.objects.in_bulk(phones, field_name="phone")
    refs = set()
    while len(refs) < count:
        refs.add(new_ref())
    Ticket.objects.bulk_create(
        Ticket(ref=ref, contact=contacts[p], created=earlier, last_message_at=earlier)
        for p, ref in zip(phones, refs, strict=True)
    )
    Message.objects.bulk_create(
        Message(ticket=t, direction=Message.Direction.IN, body="earlier", created=earlier)
        for t in Ticket.objects.all()
    )
    return phones


def fill_events(n: int, existing: list[str], first: int, seed: int) -> None:
    """N pending events, half from new numbers, half to existing tickets, interleaved."""
    from django.db import transaction

    from smsdesk.sms.models import InboundEvent

    rng = random.Random(seed)
    senders = [f"+3162{first + k:07d}" for k in range(n // 2)]
    senders += [rng.choice(existing) for _ in range(n - n // 2)]
    rng.shuffle(senders)
    start = datetime.now(UTC)
    events = [
        InboundEvent(
            provider="messagebird",
            key=f"bench-{first + k}",
            sender=sender,
            recipient=ORIGINATOR,
            text=f"bench text {first + k}",
            raw=raw(sender, first + k),
            received_at=start + timedelta(microseconds=k),
        )
        for k, sender in enumerate(senders)
    ]
    # One commit: the worker meets the whole backlog at once.
    with transaction.atomic():
        InboundEvent.objects.bulk_create(events, batch_size=2000)


PENDING = "SELECT count(*) FROM sms_inboundevent WHERE processed_at IS NULL AND error = ''"
ERRORS = "SELECT count(*) FROM sms_inboundevent WHERE error <> ''"
OUTBOX = "SELECT count(*) FROM desk_message WHERE status IN ('queued', 'sending')"
SENT = "SELECT count(*) FROM desk_message WHERE status = 'sent'"
FAILED = "SELECT count(*) FROM desk_message WHERE status = 'failed'"


def count(sql: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql)
        return int(cursor.fetchone()[0])


def backend_cpu(database_url: str) -> Callable[[], float]:
    """CPU seconds of the PostgreSQL backends serving the bench database (0 on SQLite)."""
    if not database_url.startswith("postgres"):
        return lambda: 0.0
    name = urlsplit(database_url).path.lstrip("/")
    server = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
    seen: dict[int, float] = {}

    def total() -> float:
        with psycopg.connect(server, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            ).fetchall()
        for (pid,) in rows:
            seen[pid] = max(seen.get(pid, 0.0), cpu_seconds(pid))
        return sum(seen.values())

    return total


@contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_idle(procs: list[subprocess.Popen[bytes]], deadline: float) -> None:
    """Until the workers have started and stopped spending CPU (imports, connect)."""
    last = -1.0
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if any(p.poll() is not None for p in procs):
            raise SystemExit("a worker exited at start-up; see worker.log")
        now = sum(cpu_seconds(p.pid) for p in procs)
        # Idle workers still poll (every 0.1 s): "idle" is under 10 % of a core.
        if last >= 0 and now - last < 0.05 * len(procs):
            return
        last = now
    raise SystemExit("the workers did not settle")


def run(args: argparse.Namespace, workdir: Path, database_url: str) -> None:
    with common.fake_provider(workdir) as (api_url, _):
        measure(args, workdir, database_url, api_url)


def measure(args: argparse.Namespace, workdir: Path, database_url: str, api_url: str) -> None:
    env = desk_env(database_url, api_url)
    log = workdir / "worker.log"
    subprocess.run(
        [str(SMSDESK), "migrate", "-v0"],
        cwd=REPO,
        env=env,
        check=True,
        timeout=args.timeout,
        capture_output=True,
    )
    setup_django(env)
    existing = fill_existing(args.existing if args.existing is not None else args.events // 4)
    deadline = time.monotonic() + args.timeout
    db_cpu = backend_cpu(database_url)

    prefix = args.profile.split() if args.profile else []
    workers = [str(SMSDESK), "worker"]
    with ExitStack() as stack:
        procs = [
            stack.enter_context(process(prefix + workers, env, log)) for _ in range(args.workers)
        ]
        wait_idle(procs, deadline)
        cpu0 = sum(cpu_seconds(p.pid) for p in procs)
        fill_events(args.events, existing, 0, seed=1)
        db0 = db_cpu()
        started = time.monotonic()
        threaded_at = sent_at = None
        last_report = started
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = time.monotonic()
            pending = count(PENDING)
            outbox = count(OUTBOX)
            if threaded_at is None and pending == 0:
                threaded_at = now
            if threaded_at is not None and outbox == 0:
                sent_at = now
                break
            if now - last_report >= 5:
                last_report = now
                done = args.events - pending
                print(f"  {now - started:5.1f} s: {done} threaded, {count(SENT)} sent")
            if any(p.poll() is not None for p in procs):
                raise SystemExit(f"a worker exited:\n{log.read_text()[-3000:]}")
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
        db = db_cpu() - db0
        if threaded_at is None or sent_at is None:
            raise SystemExit(f"gave up after {args.timeout:.0f} s")

    errors, sent, failed = count(ERRORS), count(SENT), count(FAILED)
    confirmations = args.events // 2
    threading_s, sending_s = threaded_at - started, sent_at - started
    print(
        f"threaded: {args.events} events in {threading_s:.2f} s = "
        f"{args.events / threading_s:.0f} events/s; {errors} errored"
    )
    print(
        f"sent: {sent} confirmations ({confirmations} expected, {failed} failed) in "
        f"{sending_s:.2f} s = {sent / sending_s:.0f} confirmations/s"
    )
    print(
        f"end to end: {args.events / sending_s:.0f} events/s threaded and confirmed; "
        f"worker CPU {cpu:.2f} s = {cpu / args.events * 1000:.3f} s per 1,000 events"
        + (f"; PostgreSQL backends {db / args.events * 1000:.3f} s per 1,000" if db else "")
    )
    if errors or failed or sent != confirmations:
        raise SystemExit(1)
    if args.queries:
        count_queries(args.queries, existing, first=args.events)


def count_queries(n: int, existing: list[str], first: int) -> None:
    """Queries per event for one more batch, run in this process (same code, same database)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from smsdesk.desk import worker

    fill_events(n, existing, first, seed=2)
    with CaptureQueriesContext(connection) as queries:
        threaded = 0
        while done := worker.process_inbound():
            threaded += done
        threaded_queries = len(queries)
        sent = 0
        while done := worker.send_due():
            sent += done
    sending_queries = len(queries) - threaded_queries
    print(
        f"queries: {threaded_queries / threaded:.2f} per event threaded, "
        f"{sending_queries / max(sent, 1):.2f} per confirmation sent "
        f"({threaded} events, {sent} sends)"
    )


def main() -> None:
    args = parse_args()
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"run: {args.events} events ({args.events // 2} from new numbers), "
        f"{args.workers} worker(s), {'PostgreSQL' if args.postgres else 'SQLite'}"
    )
    with tempfile.TemporaryDirectory(prefix="smsdesk-bench-wk-") as tmp:
        workdir = Path(tmp)
        kind = "postgres" if args.postgres else "sqlite"
        with common.database(kind, workdir, "worker") as database_url:
            try:
                run(args, workdir, database_url)
            finally:
                if "django.db" in sys.modules:
                    from django.db import connections

                    connections.close_all()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
