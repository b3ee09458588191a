"""Phone numbers and SMS sender ids, normalised at the edge."""

from __future__ import annotations

import functools
import re

import phonenumbers

# GSM alphanumeric sender ids: at most 11 characters, letters and digits
# (with spaces), and at least one letter, otherwise it is a short number.
_ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
_DIALLABLE = re.compile(r"^\+?[0-9 ()./-]+$")


class InvalidNumber(ValueError):
    pass


def normalise_sender(raw: str, default_region: str | None = None) -> str:
    """Return an E.164 number, or the sender id itself if it is alphanumeric.

    MessageBird sends bare digits with the country code (``31612345678``),
    Flow Builder and most others send ``+31612345678``. A number without
    a country code is only read as national when a default region is set.
    """
    value = raw.strip()
    if not value:
        raise InvalidNumber("the number is empty")
    if _DIALLABLE.match(value):
        return _to_e164(value, default_region)
    if _ALPHANUMERIC_SENDER.match(value):
        return value
    raise InvalidNumber(f"{value[:40]!r} is neither a phone number nor a sender id")


# phonenumbers takes ~40 µs a number, as much as the rest of parsing a
# webhook; a customer texts several times in a conversation, so the
# numbers seen lately are kept (bounded: senders come from the network).
# Refusals are not kept: an exception is never cached.
@functools.lru_cache(maxsize=4096)
def _to_e164(value: str, default_region: str | None) -> str:
    digits = re.sub(r"[^0-9]", "", value)
    if not 3 <= len(digits) <= 15:
        raise InvalidNumber(f"{value[:40]!r} has {len(digits)} digits; a number has 3 to 15")
    if default_region and value.startswith("0") and not value.startswith("00"):
        # phonenumbers knows regions only in upper case ("NL", not "nl").
        candidate, region = digits, default_region.upper()
    else:
        # International: "+31…", "0031…" or bare digits with the country code.
        international = digits.removeprefix("00") if value.startswith("00") else digits
        candidate, region = "+" + international, None
    try:
        parsed = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(f"{value[:40]!r} is not a phone number ({exc})") from exc
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidNumber(f"{value[:40]!r} is not a possible phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def is_phone_number(sender: str) -> bool:
    """Alphanumeric sender ids cannot receive SMS; E.164 numbers can."""
    return sender.startswith("+")
