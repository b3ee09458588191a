"""The built-in phone simulator: a provider that needs no account.

Texts typed on /simulator enter through MessageBird's parser and the same
journal as real webhooks; replies "sent" here are simply marked sent, and
the simulated phone reads them back from the desk's own outbox.
"""

from __future__ import annotations

import uuid

from django.http import HttpRequest

from .base import DeliveryReceipt, InboundSms, OutboundSms
from .messagebird import parse_fields, parse_receipt, request_fields


class Simulator:
    name = "simulator"

    def verify(self, request: HttpRequest) -> None:
        # The simulator's texts are posted by the desk's own page, behind CSRF.
        return None

    def parse_inbound(self, request: HttpRequest) -> InboundSms:
        return parse_fields(request_fields(request))

    def parse_status(self, request: HttpRequest) -> DeliveryReceipt:
        return parse_receipt(request_fields(request))

    def send(self, sms: OutboundSms) -> str:
        return f"sim-{uuid.uuid4().hex}"
