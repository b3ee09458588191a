"""What every provider adapter speaks: our own small, typed objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from django.http import HttpRequest

from smsdesk.lib import http


@dataclass(frozen=True)
class InboundSms:
    sender: str  # E.164, or an alphanumeric sender id
    recipient: str  # our number as the provider gave it
    text: str
    key: str  # idempotency key: the provider's message id, or a payload hash
    sent_at: datetime | None = None


@dataclass(frozen=True)
class DeliveryReceipt:
    """A provider's report on an SMS we sent, in our own words."""

    status: str  # sent, buffered, delivered, failed or expired (desk Message statuses)
    reference: str  # our message's public id, as sent
    provider_message_id: str = ""
    at: datetime | None = None
    reason: str = ""
    error_code: str = ""


@dataclass(frozen=True)
class OutboundSms:
    to: str
    body: str
    reference: str  # our message's public id; delivery reports come back with it


class WebhookRejected(Exception):
    """A webhook we refuse: answered with `status` and `reason`, nothing stored."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ProviderError(Exception):
    """A send that failed. Permanent failures are not retried."""

    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class Provider(Protocol):
    name: str

    def verify(self, request: HttpRequest) -> None: ...

    def parse_inbound(self, request: HttpRequest) -> InboundSms: ...

    def parse_status(self, request: HttpRequest) -> DeliveryReceipt: ...

    def send(self, sms: OutboundSms) -> str: ...


@runtime_checkable
class SendsOverHttp(Protocol):
    """A provider whose send() is one POST, in two halves, so that many go at once.

    send(sms) is sent(the answer to request(sms)); the worker makes its
    requests together on one thread (http.Posts).
    """

    def request(self, sms: OutboundSms) -> http.Post: ...

    def sent(self, answer: http.Answer | Exception) -> str: ...
