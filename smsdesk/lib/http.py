"""The one door for outbound HTTP, so every provider call has timeouts.

libcurl, through pycurl: a send to a local fake provider costs about a
third of the CPU it took through urllib3 (docs/performance.md). post_json
makes one call and waits for it; each thread keeps a handle of its own, and
with it its own kept-alive connection. Posts keeps many calls in flight at
once on the thread that drives it, which is how the worker sends: curl
works every connection from one event loop, where a thread per call cost
the worker several times the CPU in thread switches and waits for the
interpreter lock (docs/performance.md).
"""

from __future__ import annotations

import json
import math
import selectors
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Generic, TypeVar

import pycurl

__all__ = [
    "TIMEOUT",
    "Answer",
    "BadUrl",
    "Post",
    "Posts",
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


@dataclass(frozen=True)
class Post:
    """A JSON POST to make: what post_json and Posts.start take."""

    url: str
    payload: object
    headers: Mapping[str, str]


def post_json(url: str, payload: object, headers: Mapping[str, str]) -> Answer:
    """POST `payload` as JSON and read the whole answer; raises Unreachable or TimedOut.

    Never retried here: a POST that may have reached the provider is the
    outbox's to retry, with its backoff and its record of attempts.
    """
    curl = handle()
    exchange = Exchange(curl, Post(url, payload, headers))
    try:
        curl.perform()
    except pycurl.error as exc:
        raise exchange.failure(*exc.args) from exc
    return exchange.answer()


class Exchange:
    """One POST on a curl handle: the request set on it, and the answer as it comes."""

    def __init__(self, curl: pycurl.Curl, post: Post):
        self.curl = curl
        self.url = post.url
        self.body = BytesIO()
        self.received: dict[str, str] = {}
        curl.setopt(pycurl.URL, post.url)
        curl.setopt(
            pycurl.HTTPHEADER,
            [f"{name}: {value}" for name, value in post.headers.items()]
            # "Expect:" keeps curl from waiting for a 100 Continue before the body.
            + ["Content-Type: application/json", "Expect:"],
        )
        curl.setopt(pycurl.POSTFIELDS, json.dumps(post.payload).encode())
        curl.setopt(pycurl.WRITEDATA, self.body)
        curl.setopt(pycurl.HEADERFUNCTION, self.header_line)

    def header_line(self, line: bytes) -> None:
        name, colon, value = line.decode("latin-1").partition(":")
        if colon:
            self.received[name.strip().lower()] = value.strip()
        elif name.startswith("HTTP/"):
            self.received.clear()  # a new status line (after a 100 Continue): its own headers

    def answer(self) -> Answer:
        status = self.curl.getinfo(pycurl.RESPONSE_CODE)
        return Answer(status, self.received, self.body.getvalue())

    def failure(self, code: int, message: str = "") -> Exception:
        """What a curl error code means to the caller: BadUrl, TimedOut or Unreachable."""
        if code in MISCONFIGURED:
            return BadUrl(f"cannot send to {self.url!r}: {message}")
        if code in TIMED_OUT:
            return TimedOut(message)
        return Unreachable(message or f"curl error {code}")


K = TypeVar("K")

# What curl asks Posts to wait for on a socket; POLL_REMOVE (not here) is nothing.
WATCHED = {
    pycurl.POLL_IN: selectors.EVENT_READ,
    pycurl.POLL_OUT: selectors.EVENT_WRITE,
    pycurl.POLL_INOUT: selectors.EVENT_READ | selectors.EVENT_WRITE,
}


class Posts(Generic[K]):
    """POSTs in flight together, driven by the thread that calls finished().

    Each is started with a key and comes back from finished() with it, as
    an Answer or the error post_json would have raised (BadUrl, TimedOut,
    Unreachable), each with the same TIMEOUT. Handles are kept for the next
    calls, and with them their connections. One thread only: a Posts is not
    shared.
    """

    def __init__(self) -> None:
        self.multi = pycurl.CurlMulti()
        # Sockets and timer reported by curl, waited on with the kernel's
        # own poller: select(), which pycurl's CurlMulti.select uses, cannot
        # wait on a socket numbered past 1024.
        self.multi.setopt(pycurl.M_SOCKETFUNCTION, self.watch)
        self.multi.setopt(pycurl.M_TIMERFUNCTION, self.timer)
        self.selector = selectors.DefaultSelector()
        self.due: float | None = None  # when curl wants socket_action(SOCKET_TIMEOUT)
        self.generation = _generation
        self.idle: list[pycurl.Curl] = []
        self.busy: dict[pycurl.Curl, tuple[K, Exchange]] = {}

    def __len__(self) -> int:
        return len(self.busy)

    def start(self, key: K, post: Post) -> None:
        if self.generation != _generation:
            self.drop_idle()  # reset(): new calls take the new TIMEOUT
        curl = self.idle.pop() if self.idle else new_handle(TIMEOUT)
        self.busy[curl] = (key, Exchange(curl, post))
        self.multi.add_handle(curl)

    def finished(self, wait: float) -> list[tuple[K, Answer | Exception]]:
        """The POSTs that ended, waiting up to `wait` seconds for the first of them."""
        until = time.monotonic() + wait
        while True:
            done = self.collect()
            now = time.monotonic()
            if done or not self.busy or now >= until:
                return done
            timeout = until - now if self.due is None else max(0.0, min(until, self.due) - now)
            if self.selector.get_map():
                ready = self.selector.select(timeout)
            else:
                ready = []  # no socket yet (a name being looked up): only curl's timer
                time.sleep(timeout)
            for key, events in ready:
                flags = (pycurl.CSELECT_IN if events & selectors.EVENT_READ else 0) | (
                    pycurl.CSELECT_OUT if events & selectors.EVENT_WRITE else 0
                )
                self.multi.socket_action(key.fd, flags)
            if self.due is not None and time.monotonic() >= self.due:
                self.due = None
                self.multi.socket_action(pycurl.SOCKET_TIMEOUT, 0)

    def collect(self) -> list[tuple[K, Answer | Exception]]:
        done: list[tuple[K, Answer | Exception]] = []
        while True:
            waiting, succeeded, failed = self.multi.info_read()
            for curl in succeeded:
                key, exchange = self.end(curl)
                done.append((key, exchange.answer()))
            for curl, code, message in failed:
                key, exchange = self.end(curl)
                done.append((key, exchange.failure(code, message)))
            if not waiting:
                return done

    def end(self, curl: pycurl.Curl) -> tuple[K, Exchange]:
        self.multi.remove_handle(curl)
        self.idle.append(curl)
        return self.busy.pop(curl)

    def watch(self, what: int, fd: int, multi: object, data: object) -> None:
        events = WATCHED.get(what, 0)
        registered = fd in self.selector.get_map()
        if registered and events:
            self.selector.modify(fd, events)
        elif registered:
            self.selector.unregister(fd)
        elif events:
            self.selector.register(fd, events)

    def timer(self, ms: int) -> None:
        self.due = None if ms < 0 else time.monotonic() + ms / 1000

    def drop_idle(self) -> None:
        for curl in self.idle:
            curl.close()
        self.idle = []
        self.generation = _generation

    def abandon(self) -> None:
        """Let go of the POSTs under way, unanswered; their connections are closed."""
        for curl in self.busy:
            self.multi.remove_handle(curl)
            curl.close()
        self.busy = {}


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
