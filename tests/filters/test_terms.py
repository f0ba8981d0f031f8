# ruff: noqa: RUF001, RUF003  (lookalike characters are what these tests are about)
"""DenyTermsFilter: obfuscations are seen through, spans point into the original text, and a
term never matches inside a longer word."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bedrock_gateway.filters.base import redact
from bedrock_gateway.filters.terms import WINDOW_FACTOR, DenyTermsFilter, normalize

TERMS = ["project titan", "badword", "ass", "bad word", "kill switch", "日本"]


def found(text: str, terms: list[str] = TERMS) -> list[str]:
    return [text[f.start:f.end] for f in DenyTermsFilter(terms).scan(text)]


@pytest.mark.parametrize(("text", "expected"), [
    ("plain badword here", ["badword"]),
    ("UPPER BADWORD, Mixed BadWord", ["BADWORD", "BadWord"]),
    ("fullwidth ｂａｄｗｏｒｄ!", ["ｂａｄｗｏｒｄ"]),
    ("cyrillic bаdwоrd", ["bаdwоrd"]),  # а and о are Cyrillic
    ("greek bαdwοrd", ["bαdwοrd"]),  # α and ο are Greek
    ("zero width b\u200bad\u200cw\u200dord\u2060\ufeff.", ["b\u200bad\u200cw\u200dord"]),
    ("soft hyphen bad\u00adword", ["bad\u00adword"]),
    ("diacritics bádwörd", ["bádwörd"]),
    ("combining ba\u0301dwo\u0308rd\u0301 end", ["ba\u0301dwo\u0308rd\u0301"]),
    ("math 𝐛𝐚𝐝𝐰𝐨𝐫𝐝", ["𝐛𝐚𝐝𝐰𝐨𝐫𝐝"]),
    ("circled ⓑⓐⓓⓦⓞⓡⓓ", ["ⓑⓐⓓⓦⓞⓡⓓ"]),
    ("phrase Project   Titan", ["Project   Titan"]),
    ("phrase project-titan / project_titan / project.titan",
     ["project-titan", "project_titan", "project.titan"]),
    ("phrase across lines project\n\t— titan", ["project\n\t— titan"]),
    ("phrase Ｐｒｏｊｅｃｔ　Тitan", ["Ｐｒｏｊｅｃｔ　Тitan"]),  # ideographic space, Cyrillic Т
    ("longest wins: bad word and bad", ["bad word"]),
    ("kill\u00a0switch", ["kill\u00a0switch"]),
    ("edges: ass. (ass) 'ass' ass_hat", ["ass", "ass", "ass", "ass"]),
    ("cjk 日本語を話す", ["日本"]),
])
def test_obfuscations_are_found_with_original_spans(text: str, expected: list[str]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize("text", [
    "class", "assistant", "passage", "bass guitar", "cl\u200bass", "CLASS", "ｃｌａｓｓ",
    "badwords", "badword2", "2badword", "projecttitan", "project titans", "h4te", "b4dword",
    "bad-wording", "the kill switches", "ас",  # Cyrillic "ас" folds to "ac", not "ass"
])
def test_no_match_inside_longer_words_or_with_digits(text: str) -> None:
    assert found(text, [*TERMS, "hate"]) == []


def test_normalization_maps_back_through_expansions_and_removals() -> None:
    norm, _ = normalize("ﬁne\u200b ½ Ǆ")
    assert norm == "fine 1 2 dz"
    text = "a ﬁne day"  # one original character becomes two
    f, = DenyTermsFilter(["fine"]).scan(text)
    assert (f.start, f.end) == (2, 5) and text[f.start:f.end] == "ﬁne"
    text = "x ㍻ y"  # the era sign folds to two letters and a word boundary
    assert [text[g.start:g.end] for g in DenyTermsFilter(["平成"]).scan(text)] == ["㍻"]


def test_non_latin_text_uses_unicode_boundaries() -> None:
    terms = ["дом", "bad"]
    text = "мой дом, bad дома"  # Cyrillic that does not fold away
    assert [text[f.start:f.end] for f in DenyTermsFilter(terms).scan(text)] == ["дом", "bad"]
    assert DenyTermsFilter(terms).scan("домой") == []


def test_fields_window_and_validation() -> None:
    f = DenyTermsFilter(["secret project", "x"], action="redact", name="words", category="nda")
    (finding,) = f.scan("the Secret  Project.")
    assert (finding.filter, finding.category, finding.action) == ("words", "nda", "redact")
    assert f.window == WINDOW_FACTOR * len("secret project")
    assert DenyTermsFilter(["a"]).window == 16
    assert DenyTermsFilter([]).window == 0 and DenyTermsFilter([]).scan("anything") == []
    assert DenyTermsFilter("solo").scan("so solo") != []  # a lone string is one term
    with pytest.raises(ValueError, match="no letters or digits"):
        DenyTermsFilter(["ok", "--"])
    with pytest.raises(ValueError, match="action must be one of"):
        DenyTermsFilter(["x"], action="drop")  # type: ignore[arg-type]


def test_redaction_covers_the_obfuscated_original() -> None:
    text = "say b\u200bаd w\u0301ord now"
    f = DenyTermsFilter(["bad word"], action="redact")
    assert redact(text, f.scan(text)) == "say [TERM] now"


# -- properties --------------------------------------------------------------------------------

words = st.text(string.ascii_lowercase, min_size=3, max_size=8)
filler = st.lists(st.sampled_from(["the", "a", "class", "of", "and", "passes", "to", "—", ",",
                                   "it's", "“quoted”", "naïve", "日本語"]), max_size=6)
OBFUSCATE = {"a": "аαａ", "e": "еｅ", "o": "оοｏ", "p": "рρ", "c": "сｃ", "x": "х", "i": "іι"}


def _disguise(word: str, data: st.DataObject) -> str:
    out = []
    for ch in word:
        choice = data.draw(st.sampled_from(["same", "upper", "lookalike", "zw", "mark"]))
        if choice == "upper":
            ch = ch.upper()
        elif choice == "lookalike" and ch in OBFUSCATE:
            ch = data.draw(st.sampled_from(OBFUSCATE[ch]))
        elif choice == "zw":
            ch += data.draw(st.sampled_from(["\u200b", "\u200d", "\u00ad", "\u2060"]))
        elif choice == "mark":
            ch += "\u0301"
        out.append(ch)
    return "".join(out).rstrip("\u200b\u200d\u00ad\u2060")


@settings(max_examples=300)
@given(st.lists(words, min_size=1, max_size=5, unique=True), st.data())
def test_planted_terms_are_found_and_redacted(terms: list[str], data: st.DataObject) -> None:
    f = DenyTermsFilter(terms, action="redact")
    pieces, planted = [], []
    for term in data.draw(st.lists(st.sampled_from(terms), min_size=1, max_size=4)):
        pieces.append(" ".join(data.draw(filler)) + " ")
        start = sum(map(len, pieces))
        disguised = _disguise(term, data)
        pieces.append(disguised)
        planted.append((start, start + len(disguised)))
        pieces.append(" ")
    text = "".join(pieces)
    findings = f.scan(text)
    spans = [(x.start, x.end) for x in findings]
    for x in findings:
        assert 0 <= x.start < x.end <= len(text)
    for span in planted:
        assert span in spans or any(s <= span[0] and span[1] <= e for s, e in spans)
    redacted = redact(text, findings)
    assert f.scan(redacted) == []
    for start, end in planted:
        assert text[start:end] not in redacted


@given(st.lists(words, min_size=1, max_size=5), st.data())
def test_terms_never_match_inside_a_longer_word(terms: list[str], data: st.DataObject) -> None:
    term = data.draw(st.sampled_from(terms))
    before = data.draw(st.text(string.ascii_letters + string.digits + "é", max_size=3))
    after = data.draw(st.text(string.ascii_letters + string.digits + "é", max_size=3))
    if not before and not after:
        after = "x"
    text = f"-- {before}{term}{after} --"
    assert not any(text[x.start:x.end].lower() == term.lower() and x.start == 3 + len(before)
                   for x in DenyTermsFilter(terms).scan(text))


@settings(max_examples=300)
@given(st.lists(words, min_size=1, max_size=4), st.data())
def test_fast_paths_agree_with_the_unicode_path(terms: list[str], data: st.DataObject) -> None:
    # ASCII text and text whose characters each fold to one ASCII character are matched as
    # bytes; everything else through normalize() and the Unicode pattern. Both must agree.
    f = DenyTermsFilter(terms)
    alphabet = st.sampled_from([*string.ascii_letters[:8], " ", "-", "_", "’", "é", "е", "ｂ",
                                "\u200b", "\u0301", "ﬁ", "日", *terms])
    text = "".join(data.draw(st.lists(alphabet, max_size=30)))
    norm, segments = normalize(text)
    assert f._str_rx is not None
    expected = []
    for m in f._str_rx.finditer(norm):
        start = next(o + (m.start() - n if same else 0)
                     for n, o, same in reversed(segments) if n <= m.start())
        last = next(o + (m.end() - 1 - n if same else 0)
                    for n, o, same in reversed(segments) if n <= m.end() - 1)
        end = last + 1
        while end < len(text) and text[end] == "\u0301":
            end += 1
        expected.append((start, end))
    assert [(x.start, x.end) for x in f.scan(text)] == expected
