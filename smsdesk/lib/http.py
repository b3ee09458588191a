"""The one door for outbound HTTP, so every provider call has timeouts."""

from __future__ import annotations

import math
import threading

import httpx

# Connect fails fast; a read may take a while on a slow provider, but never
# long enough to stall the worker loop. Keep a whole call well inside the
# outbox lease (Message.LEASE), or a second worker may send the row again.
TIMEOUT = httpx.Timeout(10.0, connect=3.0)

_client: httpx.Client | None = None
# Worker threads share one client (and its connection pool); the lock keeps
# two of them from each building one on first use.
_lock = threading.Lock()


def client() -> httpx.Client:
    global _client
    with _lock:
        if _client is None:
            _client = httpx.Client(
                timeout=TIMEOUT,
                headers={"User-Agent": "smsdesk"},
                # One kept-alive connection per sender thread.
                limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
            )
        return _client


def reset() -> None:
    """Close the shared client; the next call builds one with the current TIMEOUT."""
    global _client
    with _lock:
        old, _client = _client, None
    if old is not None:
        old.close()


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
