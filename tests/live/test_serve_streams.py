"""`smsdesk serve` with live streams open: they get their own threads and end at SIGTERM."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from pathlib import Path

import httpx

from tests.subprocesses import SMSDESK, WAIT, free_port, subprocess_env, wait_for

PASSWORD = "correct horse battery staple"


def answers(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def open_stream(url: str, cookie: str) -> tuple[socket.socket, bytes]:
    """A live connection and its first bytes (the server answers at once)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=WAIT)
    sock.sendall(f"GET /admin/live HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n".encode())
    data = b""
    while b"retry:" not in data and (chunk := sock.recv(65536)):
        data += chunk
    assert b"200 OK" in data and b"retry:" in data, data
    return sock, data


def read_to_end(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_requests_are_answered_while_streams_hold_threads_and_sigterm_ends_them(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = subprocess_env(f"sqlite:///{tmp_path / 'desk.sqlite3'}")
    log = tmp_path / "serve.log"
    # One web process, one request at a time, room for three streams.
    args = ["--port", str(port), "--workers", "1", "--threads", "1", "--streams", "3"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(SMSDESK), "serve", *args], cwd=tmp_path, env=env, stdout=out, stderr=out
        )
    streams: list[socket.socket] = []
    try:
        wait_for("the desk to answer", lambda: answers(url), proc)
        password = re.search(r"Sign in as admin / (\S+)", log.read_text())
        assert password, log.read_text()
        with httpx.Client(base_url=url, timeout=WAIT) as agent:
            login = agent.get("/login/").text
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login)
            assert token
            agent.post(
                "/login/",
                data={
                    "username": "admin",
                    "password": password.group(1),
                    "csrfmiddlewaretoken": token.group(1),
                },
            )
            cookie = f"sessionid={agent.cookies['sessionid']}"
            for _ in range(3):
                sock, first = open_stream(url, cookie)
                streams.append(sock)
                assert b": busy" not in first

            assert agent.get("/admin/").status_code == 200
            sock, first = open_stream(url, cookie)
            streams.append(sock)
            assert b": busy" in first, "a fourth stream is told to come back later"

        proc.send_signal(signal.SIGTERM)
        ends = [read_to_end(sock) for sock in streams[:3]]
        proc.wait(timeout=WAIT)
        output = log.read_text(errors="replace")
        assert proc.returncode == 0, output
        assert all(end.endswith(b"0\r\n\r\n") for end in ends), ends  # each stream ended cleanly
        assert "refused to gracefully stop" not in output, output
        assert "Traceback" not in output, output
    finally:
        for sock in streams:
            sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT)
