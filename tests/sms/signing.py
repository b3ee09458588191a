"""Signing webhooks the way MessageBird does, for tests of the verifying side."""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import jwt

# The signing key of MessageBird's own test vectors.
SIGNING_KEY = "36efdd1aace2e26cd490f0d951138253bef2f7c6d34d18981da781555cc4cebb"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def signature(url: str, body: str = "", key: str = SIGNING_KEY, **overrides: Any) -> str:
    """A MessageBird-Signature-JWT as MessageBird makes one (providers.md §4a)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "MessageBird",
        "nbf": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
        "url_hash": sha256(url.encode()),
    }
    if body:
        claims["payload_hash"] = sha256(body.encode())
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="HS256")
