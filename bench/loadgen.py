"""The load generator: wrk, replaying pre-signed webhooks from a file.

A Python thread pool cannot load a server on a 2-core machine without taking
the server's CPU, so the requests are built and signed here, before the run,
and wrk (C, one event loop per thread) sends them: each request exactly once,
each with its own MessageBird-Signature-JWT over the exact URL and body.

The Lua script prints one `BENCH key=value …` line from wrk's `done()`; this
module parses it into a `Result`.

Where each request's own moment matters (a steady rate, and when each went
out), `paced` sends them instead: built in advance too, from one thread
over non-blocking sockets.
"""

from __future__ import annotations

import hashlib
import json
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import jwt
from common import ORIGINATOR, SIGNING_KEY

# Shared by both scripts: per-thread counts of 2xx and other answers, summed
# in done(). wrk's own error count only knows statuses above 399.
LUA_COMMON = r"""
local threads, counter = {}, 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

-- LuaJIT's FFI gives a microsecond clock, so a replay that runs out of
-- requests before wrk's fixed duration is still timed to its last answer.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_usec; } bench_timeval;
int gettimeofday(bench_timeval *tv, void *tz);
]]
local tv = ffi.new("bench_timeval")
function now_us()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000000 + tonumber(tv.tv_usec)
end

ok, non2xx, sent, first_us, last_us, npool = 0, 0, 0, 0, 0, 0

function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else non2xx = non2xx + 1 end
  last_us = now_us()
  if npool > 0 and ok + non2xx >= npool then
    wrk.thread:stop()  -- every request of this thread has its answer
  end
end

function done(summary, latency, requests)
  local total_ok, total_non2xx, total_sent, first, last = 0, 0, 0, math.huge, 0
  local finished = true  -- every thread replayed its whole share and has every answer
  for _, thread in ipairs(threads) do
    local answered = thread:get("ok") + thread:get("non2xx")
    finished = finished and thread:get("npool") > 0 and answered >= thread:get("npool")
    total_ok = total_ok + thread:get("ok")
    total_non2xx = total_non2xx + thread:get("non2xx")
    total_sent = total_sent + thread:get("sent")
    if thread:get("first_us") > 0 then first = math.min(first, thread:get("first_us")) end
    last = math.max(last, thread:get("last_us"))
  end
  -- A replay that finished early is timed from its first request to its
  -- last answer; anything else ran for wrk's whole duration.
  local span = summary.duration
  if finished and first < last then span = last - first end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d ok=%d non2xx=%d errors=%d sent=%d span_us=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, total_ok, total_non2xx, e.connect + e.read + e.write + e.timeout,
    total_sent, span, latency:percentile(50), latency:percentile(99), latency.max))
end
"""

# Replay: thread k of n takes lines k, k+n, k+2n … of the file, one line per
# request: path, content type, JWT and body, tab-separated.
LUA_REPLAY = r"""
function init(args)
  local nthreads = tonumber(args[2])
  pool, reserved = {}, 0
  local n = 0
  for line in io.lines(args[1]) do
    if n % nthreads == id then
      local path, ctype, token, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      local headers = {["Content-Type"] = ctype}
      if token ~= "" then headers["MessageBird-Signature-JWT"] = token end
      table.insert(pool, wrk.format("POST", path, headers, body))
    end
    n = n + 1
  end
  npool = #pool
end

-- delay() runs before every request: it hands out the pool's requests and
-- parks a connection for good once they are all taken, so none is sent twice.
function delay()
  if reserved < #pool then
    reserved = reserved + 1
    return 0
  end
  return 3600000
end

function request()
  -- wrk calls request() once before the run to check the script; that call
  -- comes before any delay() and must not use up a webhook.
  if reserved == 0 then return pool[1] end
  if sent == 0 then first_us = now_us() end
  sent = sent + 1
  return pool[sent]
end
"""


@dataclass
class Result:
    requests: int  # answers received
    ok: int  # 2xx answers: acknowledged webhooks
    non2xx: int
    errors: int  # connect, read, write and timeout errors
    sent: int  # replayed requests sent (0 for a fixed URL)
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        """Acknowledged (2xx) requests per second."""
        return self.ok / self.seconds if self.seconds else 0.0


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def sign(url: str, body: bytes, lifetime: float, key: str = SIGNING_KEY) -> str:
    """A MessageBird-Signature-JWT for `body` posted to exactly `url`."""
    now = int(time.time())
    claims = {
        "iss": "MessageBird",
        "nbf": now,
        "exp": now + int(lifetime),
        "url_hash": hashlib.sha256(url.encode()).hexdigest(),
        "payload_hash": hashlib.sha256(body).hexdigest(),
    }
    return jwt.encode(claims, key, algorithm="HS256")


def flow_builder_body(sender: str, key: str, fmt: str) -> tuple[str, bytes]:
    """A Flow Builder "Forward to URL" request: (content type, body)."""
    text = f"bench text {key}"
    fields = {
        "originator": sender,
        "recipient": ORIGINATOR,
        "payload": text,
        "body": text,
        "incomingMessage": text,
        "message_id": key,
        "currentTime": "2026-10-05T14:03:11+02:00",
    }
    if fmt == "json":
        return "application/json", json.dumps(fields, separators=(",", ":")).encode()
    return "application/x-www-form-urlencoded", urlencode(fields).encode()


def webhook(
    base_url: str, sender: str, key: str, lifetime: float, fmt: str = "form", path: str = "/webhook"
) -> tuple[str, bytes, dict[str, str]]:
    """A signed Flow Builder webhook from `sender` with message id `key`: (path, body, headers)."""
    content_type, body = flow_builder_body(sender, key, fmt)
    token = sign(base_url + path, body, lifetime)
    return path, body, {"Content-Type": content_type, "MessageBird-Signature-JWT": token}


def write_requests(
    file: Path,
    base_url: str,
    webhooks: Iterable[tuple[str, str]],
    lifetime: float,
    fmt: str = "form",
    path: str = "/webhook",
) -> int:
    """Sign and write one request per (sender, message id); returns how many."""
    n = 0
    with file.open("w") as out:
        for sender, key in webhooks:
            _, body, headers = webhook(base_url, sender, key, lifetime, fmt, path)
            content_type, token = headers["Content-Type"], headers["MessageBird-Signature-JWT"]
            out.write(f"{path}\t{content_type}\t{token}\t{body.decode()}\n")
            n += 1
    return n


def run_wrk(
    url: str,
    connections: int,
    seconds: float,
    requests_file: Path | None = None,
    threads: int = 1,
    until: Callable[[], bool] | None = None,
) -> Result:
    """Load `url` with wrk for at most `seconds`; with a file, replay it once instead.

    Without a file wrk repeats one GET to `url` (the trivial-response ceiling).
    wrk always runs its whole duration, even once a replay is done; `until`,
    polled while it runs, ends it early (SIGINT makes wrk report and exit).
    """
    threads = max(1, min(threads, connections))
    script = LUA_COMMON + (LUA_REPLAY if requests_file else "")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="smsdesk-bench-") as lua:
        lua.write(script)
        lua.flush()
        cmd = ["wrk", "-t", str(threads), "-c", str(connections)]
        cmd += ["-d", f"{max(1, round(seconds))}s"]
        # A long timeout, so a slow answer is measured rather than dropped as an error.
        cmd += ["--timeout", "60s", "-s", lua.name, url]
        if requests_file:
            cmd += ["--", str(requests_file), str(threads)]
        wrk = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            while until is not None and wrk.poll() is None:
                time.sleep(0.2)
                if until():
                    time.sleep(0.3)  # the last answers are on their way back
                    wrk.send_signal(signal.SIGINT)
                    break
            stdout, stderr = wrk.communicate(timeout=seconds + 120)
        finally:
            if wrk.poll() is None:
                wrk.kill()
                wrk.wait()
    line = next((x for x in stdout.splitlines() if x.startswith("BENCH ")), None)
    if wrk.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({wrk.returncode}):\n{stdout}\n{stderr}")
    values = dict(pair.split("=") for pair in line.split()[1:])
    number = {k: int(v) for k, v in values.items()}
    return Result(
        requests=number["requests"],
        ok=number["ok"],
        non2xx=number["non2xx"],
        errors=number["errors"],
        sent=number["sent"],
        seconds=number["span_us"] / 1e6,
        p50_ms=number["p50_us"] / 1000,
        p99_ms=number["p99_us"] / 1000,
        max_ms=number["max_us"] / 1000,
    )


@dataclass
class Paced:
    """What `paced` saw: when each request went out, and how long its answer took."""

    sent: list[float]  # time.time() of each request, in order
    answer_ms: list[float]  # each request's time to its whole answer, in order


def paced(
    base_url: str,
    requests: Sequence[tuple[str, bytes, dict[str, str]]],
    rate: float,
    connections: int = 1,
    timeout: float = 30.0,
) -> Paced:
    """POST each (path, body, headers) at its moment, the i-th at start + i/rate.

    A request goes at its moment, or as soon as one of `connections`
    kept-alive connections is free. One thread and non-blocking sockets,
    the requests built in advance: a thread per connection, as before,
    took a fifth of a core at 1,000 requests/s (16 threads taking turns at
    the interpreter lock), which the server being measured had to do
    without. Any answer but 200 raises.
    """
    address = urlsplit(base_url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    wire = [_request(address.netloc, *request) for request in requests]
    sent = [0.0] * len(wire)
    answer_ms = [0.0] * len(wire)
    selector = selectors.DefaultSelector()
    every = [_Connection(host, port, timeout) for _ in range(max(1, connections))]
    free = list(every)
    busy = 0
    following = 0
    start = time.monotonic()
    deadline = start + len(wire) / rate + timeout
    try:
        while following < len(wire) or busy:
            now = time.monotonic()
            while free and following < len(wire) and start + following / rate <= now:
                conn = free.pop()
                sent[following] = time.time()
                conn.send(following, wire[following])
                selector.register(conn.sock, selectors.EVENT_READ, conn)
                busy += 1
                following += 1
            if now > deadline:
                raise TimeoutError(f"{busy} requests unanswered after {timeout:g} s")
            wait = 0.5
            if free and following < len(wire):
                wait = min(wait, max(0.0, start + following / rate - now))
            for key, _ in selector.select(wait):
                conn = key.data
                answer = conn.receive()
                if answer is None:
                    continue  # more of the answer to come
                selector.unregister(conn.sock)
                busy -= 1
                index, status = answer
                if status != 200:
                    raise RuntimeError(f"webhook answered {status}")
                answer_ms[index] = (time.time() - sent[index]) * 1000
                free.append(conn)
    finally:
        selector.close()
        for conn in every:
            conn.sock.close()
    return Paced(sent, answer_ms)


def _request(netloc: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"Host: {netloc}", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _Connection:
    """One kept-alive connection of `paced`, and the answer it is reading."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.index = -1
        self.buffer = b""

    def send(self, index: int, request: bytes) -> None:
        self.index, self.buffer = index, b""
        self.sock.sendall(request)  # a request fits the socket's buffer: never waits

    def receive(self) -> tuple[int, int] | None:
        """(request index, status) once the whole answer is in; None while it is not."""
        chunk = self.sock.recv(65536)  # the selector said it will not wait
        if not chunk:
            raise ConnectionError("the server closed a kept-alive connection")
        self.buffer += chunk
        head, found, body = self.buffer.partition(b"\r\n\r\n")
        if not found:
            return None
        lines = head.decode("latin-1").split("\r\n")
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")  # a value may be empty, or follow with no space
            fields[name.strip().lower()] = value.strip()
        if len(body) < int(fields.get("content-length", "0")):
            return None
        return self.index, int(lines[0].split()[1])
