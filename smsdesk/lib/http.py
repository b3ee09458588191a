"""The one door for outbound HTTP, so every provider call has timeouts.

urllib3 rather than httpx: the same kept-alive pool and timeouts for about
half the CPU per request (0.42 against 0.86 ms per send to a local fake
provider, docs/performance.md), and the worker's sending is CPU-bound.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3 import Timeout
from urllib3.exceptions import HTTPError, LocationValueError, NewConnectionError, TimeoutError

__all__ = ["TIMEOUT", "Answer", "TimedOut", "Timeout", "Unreachable", "post_json", "reset"]

# Connect fails fast; a read may take a while on a slow provider, but never
# long enough to stall the worker loop. Keep a whole call well inside the
# outbox lease (Message.LEASE), or a second worker may send the row again.
TIMEOUT = Timeout(connect=3.0, read=10.0)
# Kept-alive connections per host: one for each of the worker's sender
# threads (desk.worker.SEND_THREADS), or every send past it opens a
# connection, uses it once and logs "pool is full".
POOL_SIZE = 64

_pool: urllib3.PoolManager | None = None
# Worker threads share one pool; the lock keeps two of them from each
# building one on first use.
_lock = threading.Lock()


class Unreachable(Exception):
    """No answer: the connection failed or broke before a response came."""


class TimedOut(Unreachable):
    """No answer in time: connecting or reading took longer than TIMEOUT allows."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def pool() -> urllib3.PoolManager:
    global _pool
    with _lock:
        if _pool is None:
            _pool = urllib3.PoolManager(maxsize=POOL_SIZE, headers={"User-Agent": "smsdesk"})
        return _pool


def post_json(url: str, payload: object, headers: Mapping[str, str]) -> Answer:
    """POST `payload` as JSON and read the whole answer; raises Unreachable or TimedOut.

    Never retried here: a POST that may have reached the provider is the
    outbox's to retry, with its backoff and its record of attempts.
    """
    try:
        response = pool().request(
            "POST", url, json=payload, headers=dict(headers), timeout=TIMEOUT, retries=False
        )
    except LocationValueError:
        raise  # a malformed URL is a setting to fix, not an outage
    except NewConnectionError as exc:  # a subclass of the connect timeout, for history's sake
        raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
    except TimeoutError as exc:
        raise TimedOut(type(exc).__name__) from exc
    except HTTPError as exc:
        raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
    return Answer(response.status, response.headers, response.data)


def reset() -> None:
    """Drop the shared pool; the next call builds one with the current TIMEOUT."""
    global _pool
    with _lock:
        old, _pool = _pool, None
    if old is not None:
        old.clear()


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
