"""The one door for outbound HTTP, so every provider call has timeouts."""

from __future__ import annotations

import httpx

# Connect fails fast; a read may take a while on a slow provider, but never
# long enough to stall the worker loop.
TIMEOUT = httpx.Timeout(10.0, connect=3.0)

_client: httpx.Client | None = None


def client() -> httpx.Client:
    global _client
    if _client is None:
        _client = httpx.Client(timeout=TIMEOUT, headers={"User-Agent": "smsdesk"})
    return _client


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (only the delta-seconds form)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
