"""The benchmarks' paced sender (`bench/loadgen.py`): every request once, never early."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import loadgen  # noqa: E402


class Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # kept alive, as the desk's server keeps them
    received: list[tuple[str, bytes, str]] = []
    status = 200

    def do_POST(self) -> None:  # noqa: N802 - the http.server name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body, self.headers["X-Seen"]))
        answer = b"OK"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Recorder.received, Recorder.status = [], 200
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def requests(n: int) -> list[tuple[str, bytes, dict[str, str]]]:
    return [("/webhook", f"body {i}".encode(), {"X-Seen": str(i)}) for i in range(n)]


def test_every_request_goes_once_with_its_body_and_headers(server: str) -> None:
    done = loadgen.paced(server, requests(60), rate=2000, connections=4)

    got = sorted(Recorder.received, key=lambda r: int(r[2]))
    assert got == [("/webhook", f"body {i}".encode(), str(i)) for i in range(60)]
    assert len(done.sent) == len(done.answer_ms) == 60
    assert all(ms > 0 for ms in done.answer_ms)


def test_no_request_goes_before_its_moment(server: str) -> None:
    rate = 200.0
    before = time.time()
    done = loadgen.paced(server, requests(20), rate=rate, connections=2)

    # The i-th is due at start + i/rate; the start is after `before`.
    assert all(sent >= before + i / rate for i, sent in enumerate(done.sent))
    assert done.sent == sorted(done.sent)


def test_an_answer_other_than_200_stops_the_run(server: str) -> None:
    Recorder.status = 403

    with pytest.raises(RuntimeError, match="webhook answered 403"):
        loadgen.paced(server, requests(3), rate=1000)
