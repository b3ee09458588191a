"""The one door for outbound HTTP, so every provider call has timeouts.

libcurl, through pycurl: a send to a local fake provider costs about a
third of the CPU it took through urllib3 (docs/performance.md), and curl
does the whole exchange without holding the interpreter lock, so the
worker's sender threads do not queue for it. Each thread keeps a handle of
its own, and with it its own kept-alive connection.
"""

from __future__ import annotations

import json
import math
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import pycurl

__all__ = [
    "TIMEOUT",
    "Answer",
    "BadUrl",
    "TimedOut",
    "Timeout",
    "Unreachable",
    "post_json",
    "reset",
]


@dataclass(frozen=True)
class Timeout:
    """Seconds to connect, then seconds for the answer once connected."""

    connect: float
    read: float


# Connect fails fast; an answer may take a while on a slow provider, but
# never long enough to stall the worker loop. A whole call takes at most
# connect + read: keep it well inside the outbox lease (Message.LEASE), or a
# second worker may send the row again.
TIMEOUT = Timeout(connect=3.0, read=10.0)

# Told apart from the other failures, though the outbox retries both.
TIMED_OUT = {pycurl.E_OPERATION_TIMEDOUT}
# A URL that cannot be used at all.
MISCONFIGURED = {pycurl.E_URL_MALFORMAT, pycurl.E_UNSUPPORTED_PROTOCOL}


class BadUrl(ValueError):
    """A URL no request can be sent to: a setting to fix, not an outage."""


class Unreachable(Exception):
    """No answer: the connection failed or broke before a response came."""


class TimedOut(Unreachable):
    """No answer in time: connecting or reading took longer than TIMEOUT allows."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Handles(threading.local):
    """Each thread's curl handle, built afresh after reset()."""

    generation = -1
    curl: pycurl.Curl | None = None


_handles = Handles()
_generation = 0


def handle() -> pycurl.Curl:
    if _handles.curl is None or _handles.generation != _generation:
        if _handles.curl is not None:
            _handles.curl.close()
        _handles.curl = new_handle(TIMEOUT)
        _handles.generation = _generation
    return _handles.curl


def new_handle(timeout: Timeout) -> pycurl.Curl:
    curl = pycurl.Curl()
    # Timeouts without SIGALRM, which would reach the wrong thread.
    curl.setopt(pycurl.NOSIGNAL, 1)
    curl.setopt(pycurl.CONNECTTIMEOUT_MS, int(timeout.connect * 1000))
    curl.setopt(pycurl.TIMEOUT_MS, int((timeout.connect + timeout.read) * 1000))
    curl.setopt(pycurl.USERAGENT, "smsdesk")
    curl.setopt(pycurl.FOLLOWLOCATION, 0)
    curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
    # The certificates Python trusts (the system's, or SSL_CERT_FILE and
    # SSL_CERT_DIR), as any other HTTPS call from this process would.
    trusted = ssl.get_default_verify_paths()
    if trusted.cafile:
        curl.setopt(pycurl.CAINFO, trusted.cafile)
    if trusted.capath:
        curl.setopt(pycurl.CAPATH, trusted.capath)
    return curl


def post_json(url: str, payload: object, headers: Mapping[str, str]) -> Answer:
    """POST `payload` as JSON and read the whole answer; raises Unreachable or TimedOut.

    Never retried here: a POST that may have reached the provider is the
    outbox's to retry, with its backoff and its record of attempts.
    """
    curl = handle()
    body = BytesIO()
    received: dict[str, str] = {}

    def header_line(line: bytes) -> None:
        name, colon, value = line.decode("latin-1").partition(":")
        if colon:
            received[name.strip().lower()] = value.strip()
        elif name.startswith("HTTP/"):
            received.clear()  # a new status line (after a 100 Continue): its own headers

    curl.setopt(pycurl.URL, url)
    curl.setopt(
        pycurl.HTTPHEADER,
        [f"{name}: {value}" for name, value in headers.items()]
        # "Expect:" keeps curl from waiting for a 100 Continue before the body.
        + ["Content-Type: application/json", "Expect:"],
    )
    curl.setopt(pycurl.POSTFIELDS, json.dumps(payload).encode())
    curl.setopt(pycurl.WRITEDATA, body)
    curl.setopt(pycurl.HEADERFUNCTION, header_line)
    try:
        curl.perform()
    except pycurl.error as exc:
        code, message = exc.args[0], exc.args[1] if len(exc.args) > 1 else ""
        if code in MISCONFIGURED:
            raise BadUrl(f"cannot send to {url!r}: {message}") from exc
        if code in TIMED_OUT:
            raise TimedOut(message) from exc
        raise Unreachable(message or f"curl error {code}") from exc
    return Answer(curl.getinfo(pycurl.RESPONSE_CODE), received, body.getvalue())


def reset() -> None:
    """Drop every thread's handle; the next call builds one with the current TIMEOUT."""
    global _generation
    _generation += 1


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (only the delta-seconds form)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    # float() also takes "nan" and "inf", which no delay can be built from.
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
