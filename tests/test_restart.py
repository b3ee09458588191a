"""The real `smsdesk serve`, stopped with SIGTERM and started again, loses nothing.

Each test runs the desk as a subprocess on its own database (never the test
database), talks to it over HTTP like MessageBird would, and reads the
database directly to see what the worker did.
"""

from __future__ import annotations

import re
import secrets
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from django.conf import settings

from tests.subprocesses import SMSDESK, WAIT, free_port, subprocess_env, wait_for

NUMBER = "+31612345678"

Query = Callable[[str], list[tuple[object, ...]]]


class Desk:
    """One `smsdesk serve` subprocess; its output goes to a file to be read after."""

    def __init__(self, workdir: Path, database_url: str, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = subprocess_env(database_url)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(SMSDESK), "serve", "--port", str(self.port)],
                cwd=workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for("the desk to answer", self.answers, self.proc)

    def answers(self) -> bool:
        try:
            return httpx.get(self.url + "/login/", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def text(self, body: str, message_id: str) -> None:
        form = {
            "originator": NUMBER,
            "recipient": "+3197010000000",
            "payload": body,
            "message_id": message_id,
        }
        response = httpx.post(self.url + "/webhook", data=form, timeout=WAIT)
        assert (response.status_code, response.text) == (200, "OK")

    def stop(self) -> str:
        """SIGTERM, as a service manager stops it; the output of the whole run."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"smsdesk did not stop within {WAIT:.0f} s of SIGTERM")
        output = self.output()
        assert self.proc.returncode == 0, output
        assert "smsdesk stopped" in output
        assert "Traceback" not in output, output
        return output

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT)


def the_thread(query: Query) -> list[tuple[object, ...]]:
    """(ticket ref, direction, body, status) for every message, in thread order."""
    return query(
        "SELECT t.ref, m.direction, m.body, m.status FROM desk_message m"
        " JOIN desk_ticket t ON t.id = m.ticket_id ORDER BY m.created, m.id"
    )


def inbound_count(query: Query) -> int:
    return int(query("SELECT count(*) FROM desk_message WHERE direction = 'in'")[0][0])  # type: ignore[call-overload]


def confirmation_sent(query: Query) -> bool:
    return bool(query("SELECT 1 FROM desk_message WHERE direction = 'out' AND status = 'sent'"))


def sign_in(client: httpx.Client, password: str) -> None:
    page = client.get("/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text
    response = client.post(
        "/login/",
        data={"username": "admin", "password": password, "csrfmiddlewaretoken": token.group(1)},
        headers={"Referer": f"{client.base_url}login/"},
    )
    assert response.status_code == 302, "the agent from the first start could not sign in"


def restart_keeps_everything(tmp_path: Path, database_url: str, query: Query) -> None:
    first = Desk(tmp_path, database_url, tmp_path / "first.log")
    try:
        first.text("My parcel never arrived", "restart-1")
        first.text("Order 1234", "restart-2")
        first.text("Hello?", "restart-3")
        wait_for(
            "three texts and a sent confirmation",
            lambda: inbound_count(query) == 3 and confirmation_sent(query),
            first.proc,
        )
        before = the_thread(query)
        agents_before = query("SELECT username, password FROM auth_user")
        output = first.stop()
    finally:
        first.kill()
    shown = re.search(r"Sign in as admin / (\S+)", output)
    assert shown, output
    password = shown.group(1)

    second = Desk(tmp_path, database_url, tmp_path / "second.log")
    try:
        second.text("Any news?", "restart-4")
        wait_for("the fourth text", lambda: inbound_count(query) == 4, second.proc)
        # The one event from this run is threaded; let the worker settle any
        # (wrong) second confirmation it might queue before looking.
        wait_for(
            "the journal to drain",
            lambda: not query("SELECT 1 FROM sms_inboundevent WHERE processed_at IS NULL"),
            second.proc,
        )
        after = the_thread(query)
        assert query("SELECT username, password FROM auth_user") == agents_before
        with httpx.Client(base_url=second.url, timeout=WAIT) as agent:
            sign_in(agent, password)
            ref = str(before[0][0])
            assert ref in agent.get("/admin/").text
        output = second.stop()
    finally:
        second.kill()

    assert "Created the first agent" not in output
    assert password not in output
    ref = before[0][0]
    assert after == [*before, (ref, "in", "Any news?", "")]
    assert [row[1:] for row in before if row[1] == "in"] == [
        ("in", "My parcel never arrived", ""),
        ("in", "Order 1234", ""),
        ("in", "Hello?", ""),
    ]
    assert [row for row in after if row[1] == "out"] == [
        (ref, "out", f"Thanks for contacting customer support! Your ticket ID is {ref}.", "sent")
    ]
    assert query("SELECT ref, status FROM desk_ticket") == [(ref, "open")]


def test_a_restarted_desk_keeps_its_tickets_and_agent_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "desk.sqlite3"

    def query(sql: str) -> list[tuple[object, ...]]:
        if not path.exists():
            return []
        db = sqlite3.connect(path, timeout=WAIT)
        try:
            return db.execute(sql).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # not migrated yet
                return []
            raise
        finally:
            db.close()

    restart_keeps_everything(tmp_path, f"sqlite:///{path}", query)


@pytest.fixture
def scratch_postgres() -> Iterator[tuple[str, Query]]:
    """A database of its own on the test session's PostgreSQL server, dropped after."""
    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql"):
        pytest.skip("the PostgreSQL variant runs in the PostgreSQL pass")
    server = {
        "host": db.get("HOST") or "127.0.0.1",
        "port": int(db.get("PORT") or 5432),
        "user": db.get("USER") or "postgres",
        "password": db.get("PASSWORD") or None,
    }
    name = f"smsdesk_restart_{secrets.token_hex(4)}"
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def query(sql: str) -> list[tuple[object, ...]]:
        with psycopg.connect(dbname=name, autocommit=True, **server) as conn:
            try:
                return conn.execute(sql).fetchall()  # type: ignore[arg-type]
            except psycopg.errors.UndefinedTable:  # not migrated yet
                return []

    password = f":{server['password']}" if server["password"] else ""
    url = f"postgres://{server['user']}{password}@{server['host']}:{server['port']}/{name}"
    try:
        yield url, query
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_restarted_desk_keeps_its_tickets_and_agent_on_postgres(
    tmp_path: Path, scratch_postgres: tuple[str, Query]
) -> None:
    url, query = scratch_postgres
    restart_keeps_everything(tmp_path, url, query)
