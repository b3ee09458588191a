"""How a text goes over the air: its encoding and how many SMS parts it takes.

The one definition of the GSM 03.38 tables (3GPP TS 23.038 §6.2.1) for the
server and the browser: `tables()` is what desk/static/desk/composer.js counts
with, so the reply box shows what `measure()` records for the sent message.

Rules:
- GSM-7 when every character is in the basic or the extension table, else
  the whole text is UCS-2 (UTF-16 in practice).
- GSM-7 costs one septet per basic character and two per extension character
  (ESC + code). UCS-2 costs UTF-16 code units: two for a character outside
  the Basic Multilingual Plane, such as most emoji.
- A part is 140 octets: 160 septets or 70 units alone; with the 6-octet
  concatenation header, 153 septets or 67 units per part.
- A part boundary never cuts a piece: an ESC pair, a surrogate pair, or a
  character with what visibly belongs to it (combining marks, variation
  selectors, skin tones, ZWJ-joined emoji, the two halves of a flag, the tag
  letters of a subdivision flag). A piece that does not fit moves whole to
  the next part, so a text can take more parts than units / capacity says.
  This is a small stand-in for Unicode grapheme clusters that composer.js
  repeats exactly; CR LF is two pieces (and two units), Hangul jamo are not
  joined.

Line breaks: a browser submits a textarea's line breaks as CR LF while the
textarea itself holds LF; `normalize_newlines` turns the submitted text back
into what the agent saw, so that the stored, sent and counted texts agree.

The look-alike map is smart_encoding.json beside this file, taken from
Twilio's smart-encoding list with one change: the spaces it widened to two
spaces become one.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

Encoding = Literal["gsm7", "ucs2"]

# The GSM 03.38 default alphabet in code order, 0x00 to 0x7F. 0x1B is not a
# character: it escapes to the extension table.
BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
ESCAPE = 0x1B
# The extension table: each is sent as ESC and this code. 0x0D (a second
# CR) and 0x1B (a further escape) map to no character.
EXTENSION_TABLE = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
BASIC = frozenset(BASIC_TABLE) - {chr(ESCAPE)}
EXTENSION = frozenset(EXTENSION_TABLE.values())
GSM = BASIC | EXTENSION

# (alone, per part of a longer text), in septets or UTF-16 units.
CAPACITY: dict[Encoding, tuple[int, int]] = {"gsm7": (160, 153), "ucs2": (70, 67)}

ZWJ = "\u200d"
SKIN_TONES = range(0x1F3FB, 0x1F3FF + 1)
TAGS = range(0xE0020, 0xE007F + 1)  # the letters of 🏴 subdivision flags
REGIONAL_INDICATORS = range(0x1F1E6, 0x1F1FF + 1)  # two make a flag


@dataclass(frozen=True)
class Measure:
    encoding: Encoding
    segments: int  # SMS parts; 0 for an empty text
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    per_segment: int  # 160 or 70 for one part, 153 or 67 for each of several
    remaining: int  # units still free in the last part
    forcing: tuple[str, ...]  # the characters that make it UCS-2, first seen first


def measure(text: str) -> Measure:
    if GSM.issuperset(text):
        encoding: Encoding = "gsm7"
        forcing: tuple[str, ...] = ()
        costs = [2 if char in EXTENSION else 1 for char in text]
    else:
        encoding = "ucs2"
        pieces = split_pieces(text)
        forcing = tuple(dict.fromkeys(piece for piece in pieces if not GSM.issuperset(piece)))
        costs = [size for piece in pieces for size in utf16_sizes(piece)]
    units = sum(costs)
    alone, per_part = CAPACITY[encoding]
    if units <= alone:
        return Measure(encoding, 1 if units else 0, units, alone, alone - units, forcing)
    segments, used = pack(costs, per_part)
    return Measure(encoding, segments, units, per_part, per_part - used, forcing)


def pack(costs: list[int], per_part: int) -> tuple[int, int]:
    """Fill parts in order, each piece whole: (parts used, units in the last one)."""
    parts, used = 1, 0
    for cost in costs:
        if used + cost > per_part:
            parts, used = parts + 1, 0
        used += cost
    return parts, used


def utf16_sizes(piece: str) -> list[int]:
    """The UTF-16 units of a piece, as one cost, or per character if no part could hold it."""
    units = [2 if ord(char) > 0xFFFF else 1 for char in piece]
    # A run of combining marks longer than a part has to be cut somewhere:
    # between characters then, still never inside a surrogate pair.
    return units if sum(units) > CAPACITY["ucs2"][1] else [sum(units)]


def split_pieces(text: str) -> list[str]:
    """The text in pieces that a part boundary never cuts (see the module's rules)."""
    pieces: list[str] = []
    for char in text:
        if pieces and joins(pieces[-1], char):
            pieces[-1] += char
        else:
            pieces.append(char)
    return pieces


def joins(piece: str, char: str) -> bool:
    """Whether `char` belongs to the piece before it rather than starting one."""
    code = ord(char)
    if piece[-1] == ZWJ or char == ZWJ or code in SKIN_TONES or code in TAGS:
        return True
    if unicodedata.category(char).startswith("M"):  # combining marks, variation selectors
        return True
    # The second regional indicator of a pair completes a flag.
    return code in REGIONAL_INDICATORS and len(piece) == 1 and ord(piece) in REGIONAL_INDICATORS


def replace_lookalikes(text: str) -> str:
    """Swap characters that force UCS-2 for GSM ones that look the same."""
    table = lookalikes()
    return "".join(table.get(char, char) for char in text)


def normalize_newlines(text: str) -> str:
    """CR LF and lone CR as LF: what the agent's textarea held, before the form sent it."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


@cache
def lookalikes() -> dict[str, str]:
    """Non-GSM character → GSM replacement, from smart_encoding.json.

    Only entries that help: the replacement is all GSM and the character is
    not GSM already. That also makes replacing twice the same as once.
    """
    entries = json.loads((Path(__file__).parent / "smart_encoding.json").read_text("utf-8"))
    return {
        entry["char"]: entry["replacement"]
        for entry in entries
        if entry["char"] not in GSM and GSM.issuperset(entry["replacement"])
    }


@cache
def strip_chars() -> str:
    """What Python's str.strip (so Django's CharField) removes from both ends."""
    return "".join(chr(code) for code in range(sys.maxunicode + 1) if chr(code).isspace())


def tables() -> dict[str, Any]:
    """The tables for the browser, as JSON-ready data (rendered by the `sms_tables` tag)."""
    return {
        "basic": "".join(sorted(BASIC)),
        "extension": "".join(sorted(EXTENSION)),
        "lookalikes": lookalikes(),
        "capacity": {
            name: {"alone": alone, "part": part} for name, (alone, part) in CAPACITY.items()
        },
        "strip": strip_chars(),
    }
