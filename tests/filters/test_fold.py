# ruff: noqa: RUF001  (lookalike characters are what these tests are about)
"""Unicode folding for PII (filters/fold.py) and the obfuscations it undoes: zero-width and
invisible characters, soft hyphens, NBSP and other spaces, dashes, fullwidth and other-script
digits and letters, internationalised addresses, and card / SSN separators."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bedrock_gateway.filters.base import redact
from bedrock_gateway.filters.fold import fold, fold_char, span
from bedrock_gateway.filters.pii import PIIFilter

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u200e", "\u034f"]


@pytest.mark.parametrize(("text", "folded"), [
    ("plain ascii 4111", "plain ascii 4111"),
    ("bob＠example．com", "bob@example.com"),
    ("ja\u200bne@exa\u00admple.com", "jane@example.com"),
    ("４１１１\u00a0１１１１", "4111 1111"),
    ("123\u201345\u20146789 \u2212 1", "123-45-6789 - 1"),
    ("٤١١١ ४१११", "4111 4111"),
    ("例え。jp ｡x", "例え.jp .x"),
    ("e\u0301x ﬁ ①", "ex fi 1"),
    ("zoë ИВАН 한국", "zoë ИВАН 한국"),  # letters stay what they are, case kept
])
def test_fold(text: str, folded: str) -> None:
    assert fold(text)[0] == folded


def test_ascii_text_is_not_copied() -> None:
    text = "nothing to fold here 4111-1111"
    assert fold(text)[0] is text


@given(st.text(max_size=80))
def test_every_folded_character_maps_back_into_the_text(text: str) -> None:
    folded, segments = fold(text)
    for i in range(len(folded)):
        start, end = span(segments, i, i + 1)
        assert 0 <= start < end <= len(text)
        assert fold_char(text[start]) or start == end - 1  # the character it came from
    if folded:
        assert span(segments, 0, len(folded))[1] <= len(text)


# -- the bypasses ------------------------------------------------------------------------------

BYPASSES = [
    ("email", "mail bob＠example．com now", "bob＠example．com"),
    ("email", "mail ｂｏｂ＠ｅｘａｍｐｌｅ．ｃｏｍ now", "ｂｏｂ＠ｅｘａｍｐｌｅ．ｃｏｍ"),
    ("email", "mail ja\u200bne.doe@example.com now", "ja\u200bne.doe@example.com"),
    ("email", "mail jane.doe@exam\u00adple.com now", "jane.doe@exam\u00adple.com"),
    ("email", "mail jane\u2060@\u2060example.com now", "jane\u2060@\u2060example.com"),
    ("email", "mail jane.doe@exämple.de now", "jane.doe@exämple.de"),
    ("email", "почта: иван@пример.рф.", "иван@пример.рф"),
    ("email", "メールはtaro@例え.jpです", "taro@例え.jp"),
    ("email", "mail jane@example。com now", "jane@example。com"),
    ("credit_card", "card 4111\u00a01111\u00a01111\u00a01111 ok", "4111\u00a01111\u00a01111\u00a01111"),
    ("credit_card", "card ４１１１ １１１１ １１１１ １１１１ ok", "４１１１ １１１１ １１１１ １１１１"),
    ("credit_card", "card ４１１１１１１１１１１１１１１１ ok", "４１１１１１１１１１１１１１１１"),
    ("credit_card", "card 4111\u200b1111\u200b1111\u200b1111 ok", "4111\u200b1111\u200b1111\u200b1111"),
    ("credit_card", "card 4111.1111.1111.1111 ok", "4111.1111.1111.1111"),
    ("credit_card", "card 4111/1111/1111/1111 ok", "4111/1111/1111/1111"),
    ("credit_card", "card 4111 1111-1111.1111 ok", "4111 1111-1111.1111"),
    ("credit_card", "card 4111 \u2013 1111 \u2013 1111 \u2013 1111 ok",
     "4111 \u2013 1111 \u2013 1111 \u2013 1111"),
    ("credit_card", "card 4111\u20141111\u20141111\u20141111.", "4111\u20141111\u20141111\u20141111"),
    ("credit_card", "card 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 ok", "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1"),
    ("credit_card", "amex 3782\u00a0822463\u00a010005", "3782\u00a0822463\u00a010005"),
    ("credit_card", "card ٤١١١ ١١١١ ١١١١ ١١١١", "٤١١١ ١١١١ ١١١١ ١١١١"),
    ("us_ssn", "ssn 123 45 6789 ok", "123 45 6789"),
    ("us_ssn", "ssn 123\u201345\u20136789 ok", "123\u201345\u20136789"),
    ("us_ssn", "ssn 123\u201445\u20146789.", "123\u201445\u20146789"),
    ("us_ssn", "ssn 123.45.6789 ok", "123.45.6789"),
    ("us_ssn", "ssn １２３－４５－６７８９ ok", "１２３－４５－６７８９"),
    ("us_ssn", "ssn 123\u00a045\u00a06789", "123\u00a045\u00a06789"),
    ("aws_secret_key", f"key {SECRET[:20]}\u200b{SECRET[20:]} ok", f"{SECRET[:20]}\u200b{SECRET[20:]}"),
    ("aws_secret_key", "key " + SECRET.translate(str.maketrans(
        string.ascii_letters, "".join(chr(ord(c) + 0xFEE0) for c in string.ascii_letters))),
     SECRET.translate(str.maketrans(string.ascii_letters, "".join(
         chr(ord(c) + 0xFEE0) for c in string.ascii_letters)))),
    ("phone", "call 415\u00a0555\u20130132 now", "415\u00a0555\u20130132"),
    ("phone", "tel. +49\u00a030\u00a012345678", "+49\u00a030\u00a012345678"),
]


@pytest.mark.parametrize(("category", "text", "value"), BYPASSES)
def test_obfuscated_values_are_found_with_their_original_span(category: str, text: str,
                                                              value: str) -> None:
    findings = PIIFilter().scan(text)
    assert [(f.category, text[f.start:f.end]) for f in findings] == [(category, value)]
    assert value not in redact(text, findings)


BENIGN_NON_ASCII = [
    "２０２４年１月１５日に会議があります", "価格は１，２９９円です", "Preis: 1 299,00 €",
    "Telefon: 030 12345678", "le 15/01/2024 à 10h30", "ISBN 978\u20133\u201316\u2013148410\u20130",
    "dates 2024/01/15 2024/01/16", "2024.01.15 – 2024.02.15",
    "prix : 1 234 567,89 €", "coordonnées 48.8566, 2.3522", "Zeitraum 2023–2024–2025–2026",
    "Seiten 1\u201312, 14\u201330", "1\u00a0000\u00a0000\u00a0000 Menschen",
    "nota ４.５ de 10", "order 2024/000123/4567", "lot 1234.5678.9012.3456",
    "ref 20240115 20240116", "ZIP 94105-1234",
    "1 2 3 4 5 6 7 8 9 10 11 12 13 14", "0 1 1 0 1 0 0 1 1 1 0 1 0 0 1 1",
    "Größe 3/4/5/6", "RGB 255/255/255", "at 12:30\u202fPM", "user＠localhost",
    "@ｍｅｎｔｉｏｎ in chat", "handles: @jane, @bob", "ｉｃｏｎ@2ｘ.ｐｎｇ",
]


def test_benign_non_ascii_and_separated_numbers_have_no_findings() -> None:
    pii = PIIFilter()
    found = {t: [(f.category, t[f.start:f.end]) for f in pii.scan(t)] for t in BENIGN_NON_ASCII}
    assert {t: hits for t, hits in found.items() if hits} == {}


values = st.sampled_from([
    ("email", "jane.doe@example.com"), ("credit_card", "4111 1111 1111 1111"),
    ("credit_card", "5555555555554444"), ("us_ssn", "123-45-6789"), ("aws_secret_key", SECRET),
])


@settings(max_examples=200)
@given(values, st.lists(st.tuples(st.integers(0, 60), st.sampled_from(INVISIBLE)), max_size=6),
       st.booleans())
def test_invisible_characters_anywhere_inside_do_not_hide_a_value(
        planted: tuple[str, str], inserts: list[tuple[int, str]], fullwidth: bool) -> None:
    category, value = planted
    if fullwidth:  # digits and letters as their fullwidth forms
        value = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in value)
    for at, char in sorted(inserts, reverse=True):
        at = min(at, len(value) - 1)
        value = value[:at] + char + value[at:]
    text = f"see {value} now"
    findings = PIIFilter().scan(text)
    assert category in {f.category for f in findings}
    assert "[" + category.upper() + "]" in redact(text, findings)


def test_the_stable_class_holds_only_characters_that_fold_to_themselves() -> None:
    from bedrock_gateway.filters.fold import _STABLE_RUNS

    stable = [chr(c) for c in range(0x10000) if _STABLE_RUNS.fullmatch(chr(c))]
    assert len(stable) > 30000  # CJK, Hangul, kana, Latin, Greek, Cyrillic, ...
    assert [c for c in stable if fold_char(c) != c] == []


@pytest.mark.parametrize("text", [
    "日本語のテキスト、ＡＢＣ１２３と\u200bゼロ幅…",  # expansions, removals, one-to-one
    "ＡＢＣ" * 50 + " plain",  # dense one-to-one
    "a\u200b\u200bb\u00ad" * 20,  # removals only, some consecutive
])
def test_each_path_maps_back(text: str) -> None:
    folded, segments = fold(text)
    rebuilt = "".join(fold_char(c) for c in text)
    assert folded == rebuilt
    for i, c in enumerate(folded):
        start, _ = span(segments, i, i + 1)
        assert c in fold_char(text[start]), (i, c, text[start])
