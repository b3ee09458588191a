"""MessageBird-Signature-JWT: the 44 official vectors plus the edges they leave out."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt
import pytest

from smsdesk.sms.providers.messagebird import SignatureInvalid, verify_signature_jwt

VECTORS = Path("/work/shared/fixtures/messagebird_jwt_vectors.json")
CASES: list[dict[str, Any]] = json.loads(VECTORS.read_text())["cases"]
# The "none" case carries no secret: any key must fail it.
ANY_KEY = "36efdd1aace2e26cd490f0d951138253bef2f7c6d34d18981da781555cc4cebb"
KEY = ANY_KEY
URL = "https://desk.example.com/webhook?a=1&b=2"
BODY = b'{"originator":"+31612345678","payload":"hi"}'
NOW = 1_800_000_000


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def token(key: str | bytes = KEY, algorithm: str = "HS256", **overrides: Any) -> str:
    claims: dict[str, Any] = {
        "iss": "MessageBird",
        "nbf": NOW,
        "exp": NOW + 60,
        "jti": "0b7c4d16-5d0e-4a7f-9c8e-2f4f9b6f1a11",
        "url_hash": sha256(URL.encode()),
        "payload_hash": sha256(BODY),
    }
    claims.update(overrides)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm=algorithm)


def test_the_vector_file_holds_all_44_cases() -> None:
    assert len(CASES) == 44
    assert len({case["name"] for case in CASES}) == 44


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_official_vector(case: dict[str, Any]) -> None:
    now = datetime.fromisoformat(case["timestamp"]).timestamp()
    body = (case.get("payload") or "").encode()
    secret = case.get("secret", ANY_KEY)

    if case["valid"]:
        claims = verify_signature_jwt(case["token"], secret, case["url"], body, now=now)
        assert claims["iss"] == "MessageBird"
    else:
        with pytest.raises(SignatureInvalid) as excinfo:
            verify_signature_jwt(case["token"], secret, case["url"], body, now=now)
        assert str(excinfo.value) == case["reason"]


def test_it_accepts_a_token_of_its_own_making() -> None:
    claims = verify_signature_jwt(token(), KEY, URL, BODY, now=NOW)

    assert claims["url_hash"] == sha256(URL.encode())


def test_it_rejects_a_token_signed_with_the_hex_decoded_key() -> None:
    # The key is used as its UTF-8 text, though it looks like hex (providers.md §4a).
    forged = token(key=bytes.fromhex(KEY))

    with pytest.raises(SignatureInvalid, match="signature is invalid"):
        verify_signature_jwt(forged, KEY, URL, BODY, now=NOW)


def test_it_rejects_a_token_signed_with_another_key() -> None:
    with pytest.raises(SignatureInvalid, match="signature is invalid"):
        verify_signature_jwt(
            token(key="another-signing-key-of-32-bytes!!"), KEY, URL, BODY, now=NOW
        )


@pytest.mark.parametrize(("now", "valid"), [(NOW + 60, True), (NOW + 61, True), (NOW + 62, False)])
def test_it_allows_one_second_of_leeway_after_exp(now: int, valid: bool) -> None:
    if valid:
        verify_signature_jwt(token(), KEY, URL, BODY, now=now)
    else:
        with pytest.raises(SignatureInvalid, match="exp is in the past"):
            verify_signature_jwt(token(), KEY, URL, BODY, now=now)


@pytest.mark.parametrize(("now", "valid"), [(NOW, True), (NOW - 1, True), (NOW - 2, False)])
def test_it_allows_one_second_of_leeway_before_nbf(now: int, valid: bool) -> None:
    if valid:
        verify_signature_jwt(token(), KEY, URL, BODY, now=now)
    else:
        with pytest.raises(SignatureInvalid, match="nbf is in the future"):
            verify_signature_jwt(token(), KEY, URL, BODY, now=now)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "Mallory"}, "issuer"),
        ({"iss": None}, "iss"),
        ({"nbf": None}, "nbf"),
        ({"exp": None}, "exp"),
        ({"url_hash": None}, "url_hash is invalid"),
        ({"url_hash": 12345}, "url_hash is invalid"),
        ({"payload_hash": None}, "payload_hash is not set but payload is present"),
        ({"nbf": "soon"}, "nbf"),
    ],
    ids=[
        "wrong iss",
        "no iss",
        "no nbf",
        "no exp",
        "no url_hash",
        "numeric url_hash",
        "no payload_hash",
        "text nbf",
    ],
)
def test_it_rejects_a_token_with_bad_or_missing_claims(
    overrides: dict[str, Any], reason: str
) -> None:
    with pytest.raises(SignatureInvalid, match=reason):
        verify_signature_jwt(token(**overrides), KEY, URL, BODY, now=NOW)


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_it_accepts_the_other_hmac_algorithms(algorithm: str) -> None:
    key = KEY * 2  # HS512 wants a key of at least 64 bytes
    verify_signature_jwt(token(key=key, algorithm=algorithm), key, URL, BODY, now=NOW)


@pytest.mark.parametrize("garbage", ["", "not-a-jwt", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..", "\x00"])
def test_it_rejects_garbage_instead_of_crashing(garbage: str) -> None:
    with pytest.raises(SignatureInvalid):
        verify_signature_jwt(garbage, KEY, URL, BODY, now=NOW)
