"""Provider adapters. The registry is explicit: no discovery."""

from __future__ import annotations

from django.conf import settings

from .base import (
    DeliveryReceipt,
    InboundSms,
    OutboundSms,
    Provider,
    ProviderError,
    SendsOverHttp,
    WebhookRejected,
)
from .messagebird import MessageBird
from .simulator import Simulator

__all__ = [
    "DeliveryReceipt",
    "InboundSms",
    "OutboundSms",
    "Provider",
    "ProviderError",
    "SendsOverHttp",
    "WebhookRejected",
    "outbound",
    "get",
]


def get(name: str) -> Provider:
    if name == "messagebird":
        return MessageBird.from_settings()
    if name == "simulator":
        return Simulator()
    raise KeyError(f"unknown provider {name!r}")


def outbound() -> Provider:
    """The provider replies go out through: MessageBird with a key, else the simulator."""
    return get(settings.SMSDESK_PROVIDER)
