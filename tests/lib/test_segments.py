"""SMS encoding and parts: GSM 03.38 tables, part boundaries, look-alikes."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsdesk.lib.segments import (
    BASIC_TABLE,
    EXTENSION_TABLE,
    Measure,
    lookalikes,
    measure,
    normalize_newlines,
    replace_lookalikes,
    tables,
)

# GSM 03.38 default alphabet, GSM code → Unicode code point, as 3GPP TS 23.038
# §6.2.1 lists it (unicode.org's GSM0338.TXT agrees). 0x1B is the escape.
STANDARD_BASIC = {
    0x00: 0x0040, 0x01: 0x00A3, 0x02: 0x0024, 0x03: 0x00A5, 0x04: 0x00E8, 0x05: 0x00E9, 0x06: 0x00F9, 0x07: 0x00EC,
    0x08: 0x00F2, 0x09: 0x00C7, 0x0A: 0x000A, 0x0B: 0x00D8, 0x0C: 0x00F8, 0x0D: 0x000D, 0x0E: 0x00C5, 0x0F: 0x00E5,
    0x10: 0x0394, 0x11: 0x005F, 0x12: 0x03A6, 0x13: 0x0393, 0x14: 0x039B, 0x15: 0x03A9, 0x16: 0x03A0, 0x17: 0x03A8,
    0x18: 0x03A3, 0x19: 0x0398, 0x1A: 0x039E, 0x1C: 0x00C6, 0x1D: 0x00E6, 0x1E: 0x00DF, 0x1F: 0x00C9,
    0x20: 0x0020, 0x21: 0x0021, 0x22: 0x0022, 0x23: 0x0023, 0x24: 0x00A4, 0x25: 0x0025, 0x26: 0x0026, 0x27: 0x0027,
    0x28: 0x0028, 0x29: 0x0029, 0x2A: 0x002A, 0x2B: 0x002B, 0x2C: 0x002C, 0x2D: 0x002D, 0x2E: 0x002E, 0x2F: 0x002F,
    0x30: 0x0030, 0x31: 0x0031, 0x32: 0x0032, 0x33: 0x0033, 0x34: 0x0034, 0x35: 0x0035, 0x36: 0x0036, 0x37: 0x0037,
    0x38: 0x0038, 0x39: 0x0039, 0x3A: 0x003A, 0x3B: 0x003B, 0x3C: 0x003C, 0x3D: 0x003D, 0x3E: 0x003E, 0x3F: 0x003F,
    0x40: 0x00A1, 0x41: 0x0041, 0x42: 0x0042, 0x43: 0x0043, 0x44: 0x0044, 0x45: 0x0045, 0x46: 0x0046, 0x47: 0x0047,
    0x48: 0x0048, 0x49: 0x0049, 0x4A: 0x004A, 0x4B: 0x004B, 0x4C: 0x004C, 0x4D: 0x004D, 0x4E: 0x004E, 0x4F: 0x004F,
    0x50: 0x0050, 0x51: 0x0051, 0x52: 0x0052, 0x53: 0x0053, 0x54: 0x0054, 0x55: 0x0055, 0x56: 0x0056, 0x57: 0x0057,
    0x58: 0x0058, 0x59: 0x0059, 0x5A: 0x005A, 0x5B: 0x00C4, 0x5C: 0x00D6, 0x5D: 0x00D1, 0x5E: 0x00DC, 0x5F: 0x00A7,
    0x60: 0x00BF, 0x61: 0x0061, 0x62: 0x0062, 0x63: 0x0063, 0x64: 0x0064, 0x65: 0x0065, 0x66: 0x0066, 0x67: 0x0067,
    0x68: 0x0068, 0x69: 0x0069, 0x6A: 0x006A, 0x6B: 0x006B, 0x6C: 0x006C, 0x6D: 0x006D, 0x6E: 0x006E, 0x6F: 0x006F,
    0x70: 0x0070, 0x71: 0x0071, 0x72: 0x0072, 0x73: 0x0073, 0x74: 0x0074, 0x75: 0x0075, 0x76: 0x0076, 0x77: 0x0077,
    0x78: 0x0078, 0x79: 0x0079, 0x7A: 0x007A, 0x7B: 0x00E4, 0x7C: 0x00F6, 0x7D: 0x00F1, 0x7E: 0x00FC, 0x7F: 0x00E0,
}  # fmt: skip
ESC = 0x1B
# The extension table: ESC, then this code.
STANDARD_EXTENSION = {
    0x0A: 0x000C, 0x14: 0x005E, 0x28: 0x007B, 0x29: 0x007D, 0x2F: 0x005C,
    0x3C: 0x005B, 0x3D: 0x007E, 0x3E: 0x005D, 0x40: 0x007C, 0x65: 0x20AC,
}  # fmt: skip
TO_SEPTETS = {chr(u): [code] for code, u in STANDARD_BASIC.items()} | {
    chr(u): [ESC, code] for code, u in STANDARD_EXTENSION.items()
}
GSM_CHARS = sorted(TO_SEPTETS)


def gsm_parts(text: str) -> int:
    """Reference: encode to septets, cut 153-septet parts, never right after an ESC."""
    septets = [septet for char in text for septet in TO_SEPTETS[char]]
    if len(septets) <= 160:
        return 1 if septets else 0
    parts = 0
    while septets:
        cut = 152 if len(septets) > 153 and septets[152] == ESC else 153
        septets, parts = septets[cut:], parts + 1
    return parts


def ucs2_parts(text: str) -> int:
    """Reference: encode to UTF-16, cut 67-unit parts, never after a high surrogate."""
    data = text.encode("utf-16-be")
    units = [data[i : i + 2] for i in range(0, len(data), 2)]
    if len(units) <= 70:
        return 1
    parts = 0
    while units:
        cut = 66 if len(units) > 67 and 0xD8 <= units[66][0] <= 0xDB else 67
        units, parts = units[cut:], parts + 1
    return parts


# The GSM 03.38 tables, character by character.


@pytest.mark.parametrize(("code", "unicode"), sorted(STANDARD_BASIC.items()))
def test_it_sends_each_basic_character_as_one_septet(code: int, unicode: int) -> None:
    assert BASIC_TABLE[code] == chr(unicode)
    assert measure(chr(unicode)) == Measure("gsm7", 1, 1, 160, 159, ())


@pytest.mark.parametrize(("code", "unicode"), sorted(STANDARD_EXTENSION.items()))
def test_it_sends_each_extension_character_as_two_septets(code: int, unicode: int) -> None:
    assert EXTENSION_TABLE[code] == chr(unicode)
    assert measure(chr(unicode)) == Measure("gsm7", 1, 2, 160, 158, ())


def test_it_has_no_table_entries_beyond_the_standard() -> None:
    assert len(BASIC_TABLE) == 128 and BASIC_TABLE[ESC] == "\x1b"
    assert EXTENSION_TABLE == {code: chr(u) for code, u in STANDARD_EXTENSION.items()}
    assert tables()["basic"] == "".join(sorted(chr(u) for u in STANDARD_BASIC.values()))
    assert tables()["extension"] == "".join(sorted(chr(u) for u in STANDARD_EXTENSION.values()))


def test_every_other_character_of_the_bmp_forces_ucs2() -> None:
    gsm = {char for char in map(chr, range(0x10000)) if measure(char).encoding == "gsm7"}
    assert gsm == set(GSM_CHARS)


def test_the_escape_character_itself_is_not_gsm() -> None:
    assert measure("\x1b").forcing == ("\x1b",)


def test_only_the_capital_c_cedilla_is_gsm() -> None:
    assert measure("Ça va").encoding == "gsm7"
    assert measure("Garçon") == Measure("ucs2", 1, 6, 70, 64, ("ç",))
    assert measure("á í ó ú Á").forcing == ("á", "í", "ó", "ú", "Á")


# Part boundaries.


@pytest.mark.parametrize(
    ("length", "segments", "per_segment", "remaining"),
    [(0, 0, 160, 160), (1, 1, 160, 159), (160, 1, 160, 0), (161, 2, 153, 145),
     (306, 2, 153, 0), (307, 3, 153, 152), (459, 3, 153, 0), (460, 4, 153, 152)],
)  # fmt: skip
def test_gsm7_takes_160_alone_and_153_per_part(
    length: int, segments: int, per_segment: int, remaining: int
) -> None:
    assert measure("a" * length) == Measure("gsm7", segments, length, per_segment, remaining, ())


@pytest.mark.parametrize(
    ("length", "segments", "per_segment", "remaining"),
    [(1, 1, 70, 69), (70, 1, 70, 0), (71, 2, 67, 63), (134, 2, 67, 0), (135, 3, 67, 66)],
)
def test_ucs2_takes_70_alone_and_67_per_part(
    length: int, segments: int, per_segment: int, remaining: int
) -> None:
    assert measure("ж" * length) == Measure(
        "ucs2", segments, length, per_segment, remaining, ("ж",)
    )


def test_the_euro_sign_costs_two_septets() -> None:
    assert measure("€" * 80) == Measure("gsm7", 1, 160, 160, 0, ())
    assert measure("a" * 159 + "€") == Measure("gsm7", 2, 161, 153, 145, ())
    assert measure("{[|]}~^\\\f").units == 18


def test_an_extension_character_at_a_part_boundary_moves_to_the_next_part() -> None:
    # 152 septets, then ESC € would end the first part between ESC and its code.
    text = "a" * 152 + "€" + "a" * 152
    assert measure(text) == Measure("gsm7", 3, 306, 153, 152, ())
    assert measure("a" * 151 + "€" + "a" * 153).segments == 2  # ends the part exactly


def test_an_emoji_costs_two_units_and_is_never_split() -> None:
    assert measure("Thanks 😀") == Measure("ucs2", 1, 9, 70, 61, ("😀",))
    assert measure("😀" * 35).segments == 1
    assert measure("a" * 66 + "😀" + "a" * 66) == Measure("ucs2", 3, 134, 67, 66, ("😀",))


def test_a_flag_costs_four_units_and_stays_whole() -> None:
    assert measure("🇳🇱") == Measure("ucs2", 1, 4, 70, 66, ("🇳🇱",))
    assert measure("🇳🇱🇧🇪").forcing == ("🇳🇱", "🇧🇪")  # two flags, not a BE-flag in the middle
    assert measure("a" * 66 + "🇳🇱" + "a" * 64) == Measure("ucs2", 3, 134, 67, 66, ("🇳🇱",))


def test_joined_emoji_and_combining_marks_stay_with_their_character() -> None:
    rainbow, family, thumb = "🏳️‍🌈", "👩‍👩‍👧", "👍🏽"
    assert measure(rainbow).units == 6 and measure(family).units == 8
    assert measure(rainbow + family + thumb).forcing == (rainbow, family, thumb)
    assert measure("a" * 63 + rainbow + "a" * 63).segments == 3
    accented = "e\u0301"  # é as e and a combining acute accent
    assert measure("caf" + accented).forcing == (accented,)
    assert measure("a" * 66 + accented + "a" * 66).segments == 3


def test_a_combining_run_longer_than_a_part_is_cut_between_characters() -> None:
    text = "a" + "\u0301" * 100
    assert measure(text) == Measure("ucs2", 2, 101, 67, 33, (text,))


def test_in_ucs2_every_character_costs_its_utf16_units() -> None:
    assert measure("€ { ж").units == 5  # no escape in UCS-2
    assert measure("\U0001d11e").units == 2  # 𝄞, outside the BMP


def test_it_names_the_characters_that_force_ucs2_once_each_in_order() -> None:
    assert measure("“Hi” — “again”…").forcing == ("“", "”", "—", "…")


# Look-alikes, line breaks, the browser's tables.


def test_look_alikes_turn_smart_punctuation_into_gsm() -> None:
    text = "“Your order’s on its way” – arrives tomorrow…\u00a0Thanks — the team"
    assert measure(text).encoding == "ucs2"
    replaced = replace_lookalikes(text)
    assert replaced == '"Your order\'s on its way" - arrives tomorrow... Thanks - the team'
    assert measure(replaced) == Measure("gsm7", 1, len(replaced), 160, 160 - len(replaced), ())


def test_look_alikes_leave_what_has_none() -> None:
    assert replace_lookalikes("Café 😀 ç") == "Café 😀 ç"
    assert replace_lookalikes("a\u200bb\ufeff") == "ab"  # invisible ones go


def test_every_look_alike_replaces_a_non_gsm_character_with_gsm_ones() -> None:
    table = lookalikes()
    assert len(table) >= 250
    assert not set(table) & set(GSM_CHARS)
    assert all(set(replacement) <= set(GSM_CHARS) for replacement in table.values())
    assert table["\u00a0"] == " " and table["\u2009"] == " "  # one space, not two


def test_crlf_costs_two_and_normalising_keeps_what_the_textarea_showed() -> None:
    assert measure("a\r\nb").units == 4
    assert normalize_newlines("a\r\nb\rc\nd") == "a\nb\nc\nd"
    assert measure(normalize_newlines("a\r\nb")).units == 3


def test_the_browser_tables_are_json_with_the_capacities() -> None:
    data = json.loads(json.dumps(tables()))
    assert data == tables()
    assert data["capacity"] == {
        "gsm7": {"alone": 160, "part": 153},
        "ucs2": {"alone": 70, "part": 67},
    }
    assert data["lookalikes"]["…"] == "..."


def test_the_browser_strips_what_django_strips() -> None:
    strip = tables()["strip"]
    assert all(f"{char}x{char}".strip() == "x" for char in strip)
    others = (chr(code) for code in range(0x3100) if chr(code) not in strip)
    assert all(f"{char}x".strip() == f"{char}x" for char in others)


# Properties.

gsm_text = st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=500)
# Few characters, so part boundaries fall on the costly ones often.
mixed_text = st.text(alphabet=st.sampled_from("a €{😀ж🇳"), max_size=400)
plain_unicode = st.characters(
    exclude_categories=("Mn", "Mc", "Me", "Cs"),
    exclude_characters="\u200d",
).filter(lambda c: not (0x1F1E6 <= ord(c) <= 0x1F3FF or 0xE0020 <= ord(c) <= 0xE007F))


@given(gsm_text)
def test_a_text_of_gsm_characters_is_gsm7_and_cut_as_the_septets_are(text: str) -> None:
    result = measure(text)
    assert result.encoding == "gsm7"
    assert result.units == sum(len(TO_SEPTETS[char]) for char in text)
    assert result.segments == gsm_parts(text)


@given(
    st.text(alphabet=plain_unicode, min_size=1, max_size=300).filter(lambda t: measure(t).forcing)
)
def test_a_ucs2_text_is_cut_as_its_utf16_units_are(text: str) -> None:
    assert measure(text).segments == ucs2_parts(text)


@given(st.one_of(mixed_text, st.text(max_size=300)))
def test_parts_are_never_fewer_than_the_units_need(text: str) -> None:
    result = measure(text)
    assert result.segments >= math.ceil(result.units / result.per_segment)
    assert 0 <= result.remaining <= result.per_segment
    assert (result.segments == 0) == (text == "")
    if result.segments > 1:
        assert result.per_segment in (153, 67)


@given(st.text(max_size=200))
def test_replacing_look_alikes_twice_changes_nothing_more(text: str) -> None:
    once = replace_lookalikes(text)
    assert replace_lookalikes(once) == once


@given(st.text(alphabet=st.sampled_from(GSM_CHARS + sorted(lookalikes())), max_size=200))
def test_look_alikes_make_any_text_of_their_characters_gsm7(text: str) -> None:
    assert measure(replace_lookalikes(text)).encoding == "gsm7"
