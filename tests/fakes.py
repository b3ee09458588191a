"""A fake MessageBird REST API: a real HTTP server on a loopback port.

Tests drive the outbound path over real sockets (timeouts, refused
connections, status codes) without leaving the machine. Use it with
`from tests.fakes import fake_messagebird_fixture  # noqa: F401` in a test module.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from smsdesk.lib import http

ACCESS_KEY = "test_gshuPaZoeEG6ovbc8M79w0QyM"
ORIGINATOR = "+3197010254321"


class WideBacklogServer(ThreadingHTTPServer):
    # The worker sends 16 at once; the default backlog of 5 resets some of
    # those connects, and the retries would land after the test has looked.
    request_queue_size = 128


@dataclass(frozen=True)
class Answer:
    status: int = 201
    body: Any = None  # None on a 201: a Message object built from the request
    headers: dict[str, str] = field(default_factory=dict)
    stall: float = 0.0  # seconds to wait before answering
    hang_up: bool = False  # read the request, then close the connection without an answer


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    json: Any
    answer_status: int
    answer_body: Any


def message_object(request: dict[str, Any]) -> dict[str, Any]:
    """A 201 body shaped like MessageBird's Message object (providers.md §5)."""
    message_id = uuid.uuid4().hex
    recipients = request.get("recipients") or []
    if isinstance(recipients, str):
        recipients = recipients.split(",")
    return {
        "id": message_id,
        "href": f"https://rest.messagebird.com/messages/{message_id}",
        "direction": "mt",
        "type": "sms",
        "originator": request.get("originator"),
        "body": request.get("body"),
        "reference": request.get("reference"),
        "validity": None,
        "gateway": 239,
        "typeDetails": {},
        "datacoding": request.get("datacoding", "plain"),
        "mclass": 1,
        "scheduledDatetime": None,
        "createdDatetime": "2026-10-05T12:04:10+00:00",
        "recipients": {
            "totalCount": len(recipients),
            "totalSentCount": len(recipients),
            "totalDeliveredCount": 0,
            "totalDeliveryFailedCount": 0,
            # MessageBird gives the recipient back as a JSON number.
            "items": [
                {
                    "recipient": int(str(r).lstrip("+")) if str(r).lstrip("+").isdigit() else r,
                    "status": "sent",
                    "statusDatetime": "2026-10-05T12:04:10+00:00",
                    "messagePartCount": 1,
                }
                for r in recipients
            ],
        },
    }


class FakeMessageBird:
    """Records every request and answers from the script the test sets."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.connections = 0  # TCP connections accepted
        self._answer = Answer()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._arrived = threading.Condition()
        self._server = WideBacklogServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FakeMessageBird:
        self._thread.start()
        return self

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def respond(
        self, status: int = 201, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        """Answer every following request this way, until told otherwise."""
        with self._lock:
            self._answer = Answer(status, body, headers or {})

    def stall(self, seconds: float = 30.0) -> None:
        """Accept requests but answer only after `seconds` (past any client timeout)."""
        self._release.clear()
        with self._lock:
            self._answer = Answer(stall=seconds)

    def hang_up(self) -> None:
        """Read each request, then drop the connection without answering."""
        with self._lock:
            self._answer = Answer(hang_up=True)

    def recover(self) -> None:
        self.respond()

    def release(self) -> None:
        """Let stalled requests have their answer now."""
        self._release.set()

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> bool:
        """Block until `count` requests have arrived (a stalled one counts)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.requests) >= count, timeout)

    def references(self) -> Counter[str]:
        """How many send requests arrived per `reference` (our message uuid)."""
        with self._arrived:
            requests = list(self.requests)
        return Counter(str(r.json.get("reference")) for r in requests if isinstance(r.json, dict))

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode("utf-8", "replace")
        with self._lock:
            answer = self._answer
        body = answer.body
        if body is None and answer.status == 201:
            body = message_object(payload if isinstance(payload, dict) else {})
        with self._arrived:
            self.requests.append(
                Request(
                    method=handler.command,
                    path=handler.path,
                    headers={k.lower(): v for k, v in handler.headers.items()},
                    json=payload,
                    answer_status=answer.status,
                    answer_body=body,
                )
            )
            self._arrived.notify_all()
        if answer.stall:
            self._release.wait(answer.stall)
        if answer.hang_up:
            handler.close_connection = True
            return
        data = b"" if body is None else json.dumps(body).encode()
        try:
            handler.send_response(answer.status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in answer.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client gave up (a timeout test): nobody is listening

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, as MessageBird's API: a client that reuses its
            # connections opens no new ones.
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake.connections += 1

            def do_POST(self) -> None:
                fake._handle(self)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


# Named apart from the fixture, so a test module can import it without its
# parameter shadowing the import (pyflakes F811).
@pytest.fixture(name="fake_messagebird")
def fake_messagebird_fixture(settings: Any) -> Iterator[FakeMessageBird]:
    """A running fake, with the desk configured to send through it."""
    fake = FakeMessageBird().start()
    settings.SMSDESK_PROVIDER = "messagebird"
    settings.MESSAGEBIRD_API_URL = fake.url
    settings.MESSAGEBIRD_ACCESS_KEY = ACCESS_KEY
    settings.MESSAGEBIRD_ORIGINATOR = ORIGINATOR
    http.reset()
    yield fake
    fake.close()
    http.reset()


@pytest.fixture(name="short_timeout")
def short_timeout_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A read timeout of a fraction of a second, so a stall test takes no time."""
    monkeypatch.setattr(http, "TIMEOUT", http.Timeout(connect=1.0, read=0.3))
    http.reset()
    yield
    monkeypatch.undo()
    http.reset()
