"""Outbound HTTPS: certificates are checked against the trust store Python uses."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from smsdesk.lib import http


class Created(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"id": "abc"}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def self_signed(tmp_path: Path) -> Path:
    """A certificate for 127.0.0.1 that no authority signed (key beside it)."""
    request = "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
    subprocess.run(
        ["openssl", *request.split(), "-addext", "subjectAltName=IP:127.0.0.1"]
        + ["-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True,
        capture_output=True,
    )
    return tmp_path / "cert.pem"


@pytest.fixture
def https_url(self_signed: Path) -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Created)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(self_signed, self_signed.with_name("key.pem"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"https://127.0.0.1:{server.server_port}/messages"
    server.shutdown()
    server.server_close()
    thread.join()
    http.reset()


def test_a_server_whose_certificate_no_trusted_authority_signed_is_refused(
    https_url: str,
) -> None:
    http.reset()
    with pytest.raises(http.Unreachable, match="certificate"):
        http.post_json(https_url, {"body": "hi"}, {})


def test_the_same_server_is_trusted_once_python_trusts_its_certificate(
    https_url: str, self_signed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(self_signed))
    http.reset()
    answer = http.post_json(https_url, {"body": "hi"}, {})
    assert answer.status == 201
    assert answer.json() == {"id": "abc"}
    assert answer.headers["content-type"] == "application/json"
