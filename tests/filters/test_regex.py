"""RegexFilter: categories, spans equal to re.finditer's, the guard against catastrophic
patterns, the window, and scanning in pieces."""

from __future__ import annotations

import re
import string
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bedrock_gateway.filters.base import redact
from bedrock_gateway.filters.regex import MAX_PATTERN_LENGTH, PIECE, RegexFilter


def spans(f: RegexFilter, text: str) -> list[tuple[str, int, int]]:
    return [(x.category, x.start, x.end) for x in f.scan(text)]


def test_categories_from_mapping_or_sequence() -> None:
    text = "OPS-1234 and secret and OPS-99999"
    f = RegexFilter({"ticket": r"\bOPS-\d{3,6}\b", "word": "secret"}, action="log", name="rx")
    assert spans(f, text) == [("ticket", 0, 8), ("ticket", 24, 33), ("word", 13, 19)]
    assert {(x.filter, x.action) for x in f.scan(text)} == {("rx", "log")}
    assert [x.category for x in RegexFilter(["secret"]).scan(text)] == ["pattern"]
    assert [x.category for x in RegexFilter("secret").scan(text)] == ["pattern"]
    assert [x.category for x in RegexFilter(["OPS", "secret"]).scan(text)] == [
        "pattern_0", "pattern_0", "pattern_1"]
    assert RegexFilter([]).scan(text) == [] and RegexFilter([]).window == 0


def test_overlapping_matches_of_different_patterns_are_all_reported() -> None:
    f = RegexFilter({"a": "secret", "b": "secret project"}, action="redact")
    text = "the secret project"
    assert spans(f, text) == [("a", 4, 10), ("b", 4, 18)]
    assert redact(text, f.scan(text)) == "the [A]"


@pytest.mark.parametrize(("pattern", "reason"), [
    (r"(a+)+", "quantifier"), (r"(a*)*", "quantifier"), (r"(a?)+", "quantifier"),
    (r"(a{1,3})*", "quantifier"), (r"(\d+){3}", "quantifier"), (r"(?:\s*,)+", "quantifier"),
    (r"(?:[a-z]{1,63}\.)+", "quantifier"), (r"(?:a{1,3}){16}", "quantifier"),
    (r"(.*a){1,20}", "quantifier"), (r"^(\w+\s?)*$", "quantifier"),
    (r"(a|aa)+", "alternation"), (r"(a|a)*", "alternation"), (r"(x|)+", "alternation"),
    (r"(ab|a)*c", "alternation"), (r"(?:\d|1x)+", "alternation"),
    (r"(?i:(?:ab|AB)c)+", "alternation"),
    (r"(a)\1", "backreference"), (r"(?P<x>a)(?P=x)", "backreference"),
    (r"(a)?(?(1)b|c)", "backreference"),
    ("", "empty string"), (r"a*", "empty string"), (r"\b", "empty string"),
    (r"(?=x)", "empty string"), ("a" * (MAX_PATTERN_LENGTH + 1), "longer than"),
    ("(", "missing"), (r"[z-a]", "bad character range"),
])
def test_guard_rejects_dangerous_or_broken_patterns(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as e:
        RegexFilter({"bad": pattern}, name="mine")
    assert "'mine'" in str(e.value) and "'bad'" in str(e.value)


@pytest.mark.parametrize(("pattern", "window"), [
    (r"(?:\d{1,3}\.){3}\d{1,3}", 15), (r"\bOPS-\d{3,6}\b", 10), (r"(?:foo|bar|baz)+", 256),
    (r"(?:[a-z]{1,63}+\.)+com", 256), (r"(?>a+)+b", 256), (r"a++b", 256),
    (r"(?i)confidential", 12), (r"\d{1,3}(?:,\d{3})*", 256), (r"(?:ab?){2}", 4),
    (r"x(?:a|b)+", 256), (r"(?:https?://)?example\.com", 19), (r"(\w|\d)+", 256),
    (r"(?:cat|car)s?(?: (?:cat|car))*", 256), (r"[a-z]{1,1000}", 256),
])
def test_guard_accepts_safe_patterns_and_computes_the_window(pattern: str, window: int) -> None:
    assert RegexFilter([pattern]).window == window
    assert RegexFilter([pattern], max_window=64).window == min(window, 64)


def test_filter_window_is_the_largest_pattern_window() -> None:
    assert RegexFilter({"a": r"\d{3}", "b": r"[A-Z]{2}-\d{4}"}).window == 7


SAMPLE_PATTERNS = [
    r"\bOPS-\d{3,6}\b", r"(?i)\bconfidential\b", r"\b[A-Z]{2,5}-\d{3,6}\b", r"[a-c]{2,3}x",
    r"\d+", r"(?i)\bab+", r"\b(?:ab|ba)[ _-]only\b", r"x{1,}y", r"\w+?@", r"a++b", r"\.{2,3}z",
    r"(?<=q)ab", r"a(?=b)", r"\bcd\b", r"^ab", r"(?m)^ab$",
]
ALPHABET = "abcxyzqABCOPS-_ 0123456789@.\n"


@settings(max_examples=300)
@given(st.text(ALPHABET, max_size=120), st.sampled_from(SAMPLE_PATTERNS))
def test_spans_equal_re_finditer(text: str, pattern: str) -> None:
    text = text.replace("OP", "OPS-1") + " confidential CONFIDENTIAL ab only"
    f = RegexFilter([pattern])
    assert [(x.start, x.end) for x in f.scan(text)] == [
        m.span() for m in re.finditer(pattern, text)]


def test_long_texts_are_scanned_in_pieces_without_losing_matches() -> None:
    unit = "lorem ipsum OPS-1234 dolor "
    text = unit * (3 * PIECE // len(unit) + 7)
    for pattern in (r"\bOPS-\d{3,6}\b", r"[a-z]+ [a-z]+", r"O[^\n]*?r"):
        f = RegexFilter([pattern])
        assert [(x.start, x.end) for x in f.scan(text)] == [
            m.span() for m in re.finditer(pattern, text)], pattern


def test_a_polynomial_pattern_is_bounded_by_the_piece_size() -> None:
    f = RegexFilter([r"a.*b"])  # on text without "b", each start scans to the end of its piece
    text = "a" * 100_000
    started = time.perf_counter()
    assert f.scan(text) == []
    assert time.perf_counter() - started < 5  # about n x PIECE steps, not n squared


def test_required_literal_skip_keeps_case_and_unicode_semantics() -> None:
    f = RegexFilter([r"(?i)secret"])
    assert spans(f, "a SeCrEt") == [("pattern", 2, 8)]
    assert spans(f, "\u017fecret é") == [("pattern", 0, 6)]  # long s matches s ignoring case
    assert spans(RegexFilter([r"secret"]), "SECRET") == []


@given(st.sampled_from(["a", "ab", r"\d", "[xy]", r"\w", "(?:ab|cd)", "."]),
       st.sampled_from(["+", "*", "{1,5}", "{2,}"]), st.sampled_from(["+", "*", "{2,}"]))
def test_guard_rejects_any_nested_unbounded_quantifier(atom: str, inner: str, outer: str) -> None:
    with pytest.raises(ValueError, match="exponential"):
        RegexFilter([f"(?:{atom}{inner}){outer}x"])


@given(st.text(string.ascii_lowercase, min_size=1, max_size=4))
def test_guard_rejects_repeated_prefix_alternations(word: str) -> None:
    with pytest.raises(ValueError, match="exponential"):
        RegexFilter([f"(?:{word}|{word}{word})+!"])
