"""MessageBird: Flow Builder "Forward to URL", the legacy SMS callback, and the REST send API.

Field names, signing and error codes: shared providers.md §1–§5, taken from
MessageBird's guides and official SDKs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import jwt
from django.conf import settings
from django.http import HttpRequest

from smsdesk.lib import http
from smsdesk.lib.phone import InvalidNumber, normalise_sender

from .base import DeliveryReceipt, InboundSms, OutboundSms, ProviderError, WebhookRejected

log = logging.getLogger(__name__)

# Flow Builder sends the text three times under different names; the legacy
# callback only as `body`.
TEXT_FIELDS = ("payload", "body", "incomingMessage")
ID_FIELDS = ("message_id", "id")
TIME_FIELDS = ("createdDatetime", "currentTime")
MAX_TEXT = 5000  # a concatenated SMS tops out near 1,600 characters
MAX_ID = 128

# The SDKs accept the HMAC-SHA2 family only; "none" must be refused.
JWT_ALGORITHMS = ["HS256", "HS384", "HS512"]
JWT_LEEWAY = 1  # seconds, as MessageBird's Python SDK

# The headers MessageBird's signer writes (Go's encoding/json sorts keys),
# as the exact base64url text of the token's first segment.
_SIMPLE_HEADERS = {
    base64.urlsafe_b64encode(f'{{"alg":"{alg}","typ":"JWT"}}'.encode()).rstrip(b"="): digest
    for alg, digest in (
        ("HS256", hashlib.sha256),
        ("HS384", hashlib.sha384),
        ("HS512", hashlib.sha512),
    )
}
# Claims that PyJWT, called as below, checks no further than their presence
# and type; any other claim (iat, aud, sub, …) goes to PyJWT.
_SIMPLE_CLAIMS = frozenset({"iss", "nbf", "exp", "jti", "url_hash", "payload_hash"})

_BROKEN_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")

# The MessageBird-Signature-JWT header as WSGI names it. Read from META:
# request.headers would first parse every header of the request.
SIGNATURE_META = "HTTP_MESSAGEBIRD_SIGNATURE_JWT"


class SignatureInvalid(Exception):
    pass


def verify_signature_jwt(
    token: str, signing_key: str, url: str, body: bytes, now: float | None = None
) -> dict[str, object]:
    """Check a MessageBird-Signature-JWT and return its claims (providers.md §4a)."""
    now = time.time() if now is None else now
    claims = _simple_claims(token, signing_key) or _pyjwt_claims(token, signing_key)
    if not isinstance(claims.get("nbf"), int | float) or not isinstance(
        claims.get("exp"), int | float
    ):
        raise SignatureInvalid("invalid jwt: nbf and exp must be numbers")
    if now < claims["nbf"] - JWT_LEEWAY:
        raise SignatureInvalid("invalid jwt: claim nbf is in the future")
    if now > claims["exp"] + JWT_LEEWAY:
        raise SignatureInvalid("invalid jwt: claim exp is in the past")
    if not _hash_matches(claims.get("url_hash"), url.encode()):
        raise SignatureInvalid("invalid jwt: claim url_hash is invalid")
    payload_hash = claims.get("payload_hash")
    if body and payload_hash is None:
        raise SignatureInvalid("invalid jwt: claim payload_hash is not set but payload is present")
    if not body and payload_hash is not None:
        raise SignatureInvalid(
            "invalid jwt: claim payload_hash is set but actual payload is missing"
        )
    if body and not _hash_matches(payload_hash, body):
        raise SignatureInvalid("invalid jwt: claim payload_hash is invalid")
    return claims


def _simple_claims(token: str, signing_key: str) -> dict[str, Any] | None:
    """The claims of a well-formed token with a valid signature, checked in C; else None.

    PyJWT costs about six times more per webhook, most of it checking the
    base64 text byte by byte in Python. This path only ever accepts, and only
    what PyJWT (called as in _pyjwt_claims) accepts too: one of the exact
    headers above, canonical base64url, a correct HMAC, a JSON object of
    known claims with iss "MessageBird". Anything else, and every refusal
    with its reason, is left to PyJWT.
    """
    parts = token.encode("ascii", errors="replace").split(b".")
    if len(parts) != 3 or (digest := _SIMPLE_HEADERS.get(parts[0])) is None:
        return None
    header, payload, signature = parts
    mac = hmac.new(signing_key.encode(), header + b"." + payload, digest).digest()
    if not hmac.compare_digest(base64.urlsafe_b64encode(mac).rstrip(b"="), signature):
        return None
    try:
        decoded = base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4))
        claims = json.loads(decoded)
    except ValueError:  # binascii.Error, UnicodeDecodeError and JSONDecodeError alike
        return None
    if (
        base64.urlsafe_b64encode(decoded).rstrip(b"=") != payload
        or not isinstance(claims, dict)
        or not claims.keys() <= _SIMPLE_CLAIMS
        or claims.get("iss") != "MessageBird"
        or not ("nbf" in claims and "exp" in claims)
        or not isinstance(claims.get("jti", ""), str)
    ):
        return None
    return claims


def _pyjwt_claims(token: str, signing_key: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            signing_key.encode(),
            algorithms=JWT_ALGORITHMS,
            issuer="MessageBird",
            # Time is checked by the caller against `now`, so the official
            # vectors can run at their own recorded moment without patching clocks.
            options={"require": ["iss", "nbf", "exp"], "verify_exp": False, "verify_nbf": False},
        )
    except jwt.InvalidSignatureError as exc:
        # The reasons below are the wording of MessageBird's SDKs and test vectors.
        raise SignatureInvalid("invalid jwt: signature is invalid") from exc
    except jwt.InvalidAlgorithmError as exc:
        alg = _header_alg(token)
        raise SignatureInvalid(f"invalid jwt: signing method {alg} is invalid") from exc
    except jwt.InvalidTokenError as exc:
        raise SignatureInvalid(f"invalid jwt: {exc}") from exc
    return claims


def _header_alg(token: str) -> str:
    try:
        return str(jwt.get_unverified_header(token).get("alg"))[:20]
    except jwt.InvalidTokenError:
        return "?"


def _hash_matches(claimed: object, data: bytes) -> bool:
    if not isinstance(claimed, str):
        return False
    return hmac.compare_digest(claimed.lower(), hashlib.sha256(data).hexdigest())


def public_url(request: HttpRequest) -> str:
    """The URL MessageBird called, as it signed it: public base + path + raw query."""
    base = settings.SMSDESK_PUBLIC_URL or f"{request.scheme}://{request.get_host()}"
    query = request.META.get("QUERY_STRING", "")
    return base + request.path + (f"?{query}" if query else "")


def request_fields(request: HttpRequest) -> dict[str, str]:
    """The request's parameters as one flat dict of strings, strictly decoded.

    GET carries them in the query string; POST as JSON or a form. A POST with
    an empty body falls back to the query string (legacy callbacks).
    """
    body = request.body
    content_type = request.content_type or ""
    if request.method == "GET" or not body:
        query = request.META.get("QUERY_STRING", "").encode("latin-1")
        fields = _parse_form(query, "query string")
    elif content_type == "application/json":
        fields = _parse_json(body)
    elif content_type == "application/x-www-form-urlencoded":
        fields = _parse_form(body, "form body")
    else:
        raise WebhookRejected(
            415, f"unsupported content type {content_type!r}: send JSON or a urlencoded form"
        )
    _check_storable(fields)
    return fields


def _check_storable(fields: Mapping[str, str]) -> None:
    # PostgreSQL text cannot hold NUL, and no database takes a lone surrogate
    # (JSON "\ud800"): refused here as a 400, not a crash at INSERT.
    for name, value in fields.items():
        if "\x00" in name or "\x00" in value:
            raise WebhookRejected(400, f"field {name[:40]!r} contains a NUL character")
        try:
            name.encode("utf-8")
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise WebhookRejected(400, f"field {name[:40]!r} is not valid UTF-8") from exc


def _parse_form(raw: bytes, where: str) -> dict[str, str]:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise WebhookRejected(400, f"{where} has raw non-ASCII bytes; percent-encode them") from exc
    if _BROKEN_PERCENT.search(text):
        raise WebhookRejected(400, f"{where} has broken percent-encoding")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise WebhookRejected(400, f"{where} is not valid UTF-8 once decoded") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields and fields[name] != value:
            raise WebhookRejected(400, f"{name!r} is given twice with different values")
        fields[name] = value
    return fields


def _parse_json(body: bytes) -> dict[str, str]:
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise WebhookRejected(400, "JSON body is not valid UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise WebhookRejected(400, f"JSON body does not parse: {exc.msg}") from exc
    except (ValueError, RecursionError) as exc:
        # An integer over Python's 4,300-digit limit, or nesting deeper than the stack.
        raise WebhookRejected(
            400, "JSON body does not parse: a number or nesting is too large"
        ) from exc
    if not isinstance(data, dict):
        raise WebhookRejected(400, "JSON body must be an object")
    fields: dict[str, str] = {}
    for name, value in data.items():
        if isinstance(value, str):
            fields[name] = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            # MessageBird sends some numbers (recipient) as JSON numbers.
            fields[name] = str(value)
        elif value is None:
            fields[name] = ""
        elif name in ("originator", "recipient", *TEXT_FIELDS, *ID_FIELDS):
            raise WebhookRejected(400, f"{name!r} must be a string, not {type(value).__name__}")
    return fields


def parse_fields(fields: Mapping[str, str], default_region: str | None = None) -> InboundSms:
    """Turn Flow Builder or legacy-callback fields into an InboundSms, or reject them."""
    originator = fields.get("originator", "").strip()
    if not originator:
        raise WebhookRejected(400, "missing originator (the customer's number)")
    try:
        sender = normalise_sender(originator, default_region)
    except InvalidNumber as exc:
        raise WebhookRejected(400, f"bad originator: {exc}") from exc
    text = next((fields[name] for name in TEXT_FIELDS if fields.get(name, "").strip()), "")
    if not text:
        raise WebhookRejected(400, "missing message text (payload, body or incomingMessage)")
    if len(text) > MAX_TEXT:
        raise WebhookRejected(400, f"message text of {len(text)} characters is not an SMS")
    provider_id = next(
        (fields[name].strip() for name in ID_FIELDS if fields.get(name, "").strip()), ""
    )
    if len(provider_id) > MAX_ID:
        raise WebhookRejected(400, "message id is too long")
    recipient = fields.get("recipient", "").strip()[:32]
    return InboundSms(
        sender=sender,
        recipient=recipient,
        text=text,
        key=provider_id or _payload_key(fields),
        sent_at=_first_time(fields),
    )


def _payload_key(fields: Mapping[str, str]) -> str:
    # Flow Builder may send an empty message_id; the flow's run time
    # (currentTime) still tells two identical texts apart.
    parts = [fields.get(name, "") for name in ("originator", "recipient", "currentTime")]
    parts.append(next((fields[name] for name in TEXT_FIELDS if fields.get(name)), ""))
    return "sha256:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _first_time(fields: Mapping[str, str]) -> datetime | None:
    for name in TIME_FIELDS:
        value = fields.get(name, "").strip()
        if not value:
            continue
        try:
            parsed = datetime.fromisoformat(value.replace(" ", "+"))
            if parsed.tzinfo is None:
                continue
            # Year 1 or 9999 with an offset falls outside what a database stores.
            return parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            continue
    return None


# MessageBird's REST error codes (providers.md §5, from the official SDKs).
ERROR_CODES = {
    2: "request not allowed (check the access key)",
    9: "missing parameters",
    10: "invalid parameters",
    20: "not found",
    21: "bad request",
    25: "not enough balance",
    98: "API endpoint not found",
    99: "internal error at MessageBird",
}


# MessageBird's recipient statuses, in our words (providers.md §3). "scheduled"
# means accepted for later sending: for the desk, already with the provider.
RECEIPT_STATUSES = {
    "scheduled": "sent",
    "sent": "sent",
    "buffered": "buffered",
    "delivered": "delivered",
    "expired": "expired",
    "delivery_failed": "failed",
}


def parse_receipt(fields: Mapping[str, str]) -> DeliveryReceipt:
    """A status report's fields as a DeliveryReceipt; WebhookRejected (400) if it is not one."""
    raw_status = fields.get("status", "")
    if raw_status not in RECEIPT_STATUSES:
        raise WebhookRejected(400, f"unknown or missing status {raw_status[:40]!r}")
    reference, message_id = fields.get("reference", ""), fields.get("id", "")
    if not (reference or message_id):
        raise WebhookRejected(400, "a status report needs an id or a reference")
    if len(reference) > MAX_ID or len(message_id) > MAX_ID:
        raise WebhookRejected(400, f"id or reference over {MAX_ID} characters")
    stamp = fields.get("statusDatetime", "")
    try:
        at = datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        raise WebhookRejected(400, f"statusDatetime {stamp[:40]!r} is not a time") from None
    if at is not None and at.tzinfo is None:
        raise WebhookRejected(400, "statusDatetime has no time zone offset")
    return DeliveryReceipt(
        status=RECEIPT_STATUSES[raw_status],
        reference=reference,
        provider_message_id=message_id,
        at=at,
        reason=fields.get("statusReason", "")[:200],
        error_code=fields.get("statusErrorCode", "")[:20],
    )


class MessageBird:
    name = "messagebird"

    def __init__(
        self,
        access_key: str = "",
        originator: str = "",
        signing_key: str = "",
        api_url: str = "https://rest.messagebird.com",
        report_url: str = "",
    ):
        self.access_key = access_key
        self.originator = originator
        self.signing_key = signing_key
        self.api_url = api_url.rstrip("/")
        self.report_url = report_url

    @classmethod
    def from_settings(cls) -> MessageBird:
        public = settings.SMSDESK_PUBLIC_URL
        return cls(
            access_key=settings.MESSAGEBIRD_ACCESS_KEY,
            originator=settings.MESSAGEBIRD_ORIGINATOR,
            signing_key=settings.MESSAGEBIRD_SIGNING_KEY,
            api_url=settings.MESSAGEBIRD_API_URL,
            report_url=f"{public}/webhooks/messagebird/status" if public else "",
        )

    def verify(self, request: HttpRequest) -> None:
        token = request.META.get(SIGNATURE_META, "")
        if not token:
            raise WebhookRejected(401, "missing MessageBird-Signature-JWT header")
        try:
            verify_signature_jwt(token, self.signing_key, public_url(request), request.body)
        except SignatureInvalid as exc:
            raise WebhookRejected(401, str(exc)) from exc

    def parse_status(self, request: HttpRequest) -> DeliveryReceipt:
        return parse_receipt(request_fields(request))

    def parse_inbound(self, request: HttpRequest) -> InboundSms:
        return parse_fields(request_fields(request), settings.SMSDESK_DEFAULT_REGION)

    def send(self, sms: OutboundSms) -> str:
        post = self.request(sms)
        try:
            answer: http.Answer | Exception = http.post_json(post.url, post.payload, post.headers)
        except http.Unreachable as exc:
            answer = exc
        return self.sent(answer)

    def request(self, sms: OutboundSms) -> http.Post:
        """The POST that sends `sms`: the first half of send(), for http.Posts."""
        payload = {
            "originator": self.originator,
            "recipients": [sms.to],
            "body": sms.body,
            "datacoding": "auto",  # "plain" would silently replace accents and emoji
            "reference": sms.reference,
        }
        if self.report_url:
            payload["reportUrl"] = self.report_url
        return http.Post(
            f"{self.api_url}/messages",
            payload,
            headers={
                "Authorization": f"AccessKey {self.access_key}",
                "Accept": "application/json",
            },
        )

    def sent(self, answer: http.Answer | Exception) -> str:
        """The second half of send(): MessageBird's id for the message, or ProviderError.

        `answer` is what came back, or the error the POST ended in; an error
        other than no answer (a BadUrl, say) is raised as it is.
        """
        if isinstance(answer, http.TimedOut):
            raise ProviderError(
                f"MessageBird did not answer in time ({answer})", permanent=False
            ) from answer
        if isinstance(answer, http.Unreachable):
            raise ProviderError(
                f"could not reach MessageBird: {answer}", permanent=False
            ) from answer
        if isinstance(answer, Exception):
            raise answer
        return self._message_id(answer)

    def _message_id(self, response: http.Answer) -> str:
        status = response.status
        if status in (200, 201, 202):
            try:
                message_id = response.json()["id"]
            except (ValueError, KeyError, TypeError):
                message_id = None
            if isinstance(message_id, str | int) and str(message_id):
                return str(message_id)
            # MessageBird took the message, so it may well be on its way, and
            # the same answer would come back on every retry: retrying would
            # text the customer again and again. Fail it where an agent sees it.
            raise ProviderError(
                f"MessageBird accepted the message (HTTP {status}) but gave no message id; "
                "not retried, as it may have been sent",
                permanent=True,
            )
        if status == 429:
            raise ProviderError(
                "MessageBird rate limit (429)",
                permanent=False,
                retry_after=http.parse_retry_after(response.headers.get("retry-after")),
            )
        if status >= 500:
            raise ProviderError(f"MessageBird is unavailable (HTTP {status})", permanent=False)
        raise ProviderError(
            f"MessageBird refused the message: {self._describe(response)}", permanent=True
        )

    @staticmethod
    def _describe(response: http.Answer) -> str:
        try:
            errors = response.json()["errors"]
            first = errors[0]
            description = first.get("description") or ERROR_CODES.get(first.get("code"), "")
            parameter = f" ({first['parameter']})" if first.get("parameter") else ""
            return f"{description}{parameter} [code {first.get('code')}, HTTP {response.status}]"
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return f"HTTP {response.status}"
