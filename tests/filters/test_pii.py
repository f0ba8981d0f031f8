"""PIIFilter: every category found with exact spans, a benign corpus with no findings, and
properties over random texts with planted values."""

from __future__ import annotations

import base64
import ipaddress
import json
import math
import string
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bedrock_gateway.filters.base import Finding, redact
from bedrock_gateway.filters.pii import CATEGORIES, PIIFilter

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwi"
       "aWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

POSITIVES = [
    ("email", "write to john.doe+news@mail.example.co.uk today", "john.doe+news@mail.example.co.uk"),
    ("email", "(a_b-c%d@EXAMPLE.ORG)", "a_b-c%d@EXAMPLE.ORG"),
    ("email", "end of sentence: x@y.io.", "x@y.io"),
    ("phone", "call +44 20 7946 0958 now", "+44 20 7946 0958"),
    ("phone", "call +14155550132.", "+14155550132"),
    ("phone", "call +1 (415) 555-0132 now", "+1 (415) 555-0132"),
    ("phone", "call +49-30-1234567", "+49-30-1234567"),
    ("phone", "office: (415) 555-0132", "(415) 555-0132"),
    ("phone", "office: (415)555-0132", "(415)555-0132"),
    ("phone", "office: 415-555-0132.", "415-555-0132"),
    ("phone", "office: 415.555.0132", "415.555.0132"),
    ("phone", "office: 415 555 0132", "415 555 0132"),
    ("phone", "toll free 1-800-555-0199", "1-800-555-0199"),
    ("credit_card", "visa 4111 1111 1111 1111 exp", "4111 1111 1111 1111"),
    ("credit_card", "visa 4111-1111-1111-1111", "4111-1111-1111-1111"),
    ("credit_card", "visa 4111111111111111", "4111111111111111"),
    ("credit_card", "mc 5555 5555 5555 4444", "5555 5555 5555 4444"),
    ("credit_card", "mc 2221 0000 0000 0009", "2221 0000 0000 0009"),
    ("credit_card", "amex 3782 822463 10005", "3782 822463 10005"),
    ("credit_card", "amex 378282246310005", "378282246310005"),
    ("credit_card", "discover 6011 1111 1111 1117", "6011 1111 1111 1117"),
    ("credit_card", "jcb 3530111333300000", "3530111333300000"),
    ("credit_card", "diners 3056 930902 5904", "3056 930902 5904"),
    ("credit_card", "ref 2024 4111 1111 1111 1111", "4111 1111 1111 1111"),
    ("us_ssn", "ssn 123-45-6789.", "123-45-6789"),
    ("us_ssn", "ssn: 665-01-0001", "665-01-0001"),
    ("iban", "iban GB82 WEST 1234 5698 7654 32 thanks", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "iban GB82WEST12345698765432", "GB82WEST12345698765432"),
    ("iban", "pay DE89370400440532013000.", "DE89370400440532013000"),
    ("iban", "pay DE89 3704 0044 0532 0130 00 OK", "DE89 3704 0044 0532 0130 00"),
    ("iban", "pay FR14 2004 1010 0505 0001 3M02 606", "FR14 2004 1010 0505 0001 3M02 606"),
    ("ipv4", "host 10.0.0.1 is up", "10.0.0.1"),
    ("ipv4", "connect to 192.168.1.254:8080", "192.168.1.254"),
    ("ipv4", "range 10.0.0.0/8", "10.0.0.0"),
    ("ipv4", "at 255.255.255.255.", "255.255.255.255"),
    ("ipv4", "bare 2.7.18.1 (no version word)", "2.7.18.1"),
    ("ipv6", "v6 2001:db8::1 ok", "2001:db8::1"),
    ("ipv6", "v6 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("ipv6", "[fe80::1ff:fe23:4567:890a]:443", "fe80::1ff:fe23:4567:890a"),
    ("aws_access_key_id", "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_access_key_id", "temp ASIAY34FZKBOKMUTVV7A here", "ASIAY34FZKBOKMUTVV7A"),
    ("aws_secret_key", f"aws_secret_access_key = {SECRET}\n", SECRET),
    ("aws_secret_key", f'"{SECRET}"', SECRET),
    ("jwt", f"Authorization: Bearer {JWT}", JWT),
]


@pytest.mark.parametrize(("category", "text", "value"), POSITIVES)
def test_each_category_is_found_with_its_exact_span(category: str, text: str, value: str) -> None:
    findings = PIIFilter().scan(text)
    assert [(f.category, text[f.start:f.end]) for f in findings] == [(category, value)]
    assert findings[0].action == "redact" and findings[0].filter == "pii"


BENIGN = [
    # numbers that fail Luhn, or are not cards
    "4111 1111 1111 1112", "4111111111111112", "1234 5678 9012 3456", "0000 0000 0000 0000",
    "timestamp 1705312200000 ms", "ISBN 978-3-16-148410-0", "ISBN 9783161484100",
    "ISBN-10 0-306-40615-2", "account 12345678901234567890",
    # dates and times
    "2024-01-15", "01/15/2024", "15.01.2024", "15/01/2024", "2024-01-15T10:30:00Z",
    "2024-01-15 10:30:00.123456+00:00", "at 12:30:45", "Mon, 15 Jan 2024 10:30:00 GMT",
    "unix time 1705312200",
    # versions
    "1.2.3", "v2.10.4", "10.0.19041.1", "Python 3.11.7", "version 2.7.18.1", "v2.7.18.1",
    "Python 2.7.18.1", "ver. 1.2.3.4", "release: 4.19.0.1", "build 10.0.0.1", "1.2.3.4.5",
    "libfoo-1.2.3.4.so", "node v18.17.1", "2.7.18.1.2",
    # identifiers and digests
    "123e4567-e89b-12d3-a456-426614174000", "12345678-1234-1234-1234-123456789012",
    "commit 3a7bd3e2360a3d29eea436fcfb7e44c735d117c4",
    "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "3A7BD3E2360A3D29EEA436FCFB7E44C735D117C4", "AbstractSingletonProxyFactoryBean2Handle",
    "home/user/Documents/Projects/MyApp2024/s", "order #48213", "order ORD-2024-000123",
    "invoice INV-000-12-3456", "id 000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567",
    "123-45-0000", "MAC 00:1A:2B:3C:4D:5E", "std::vector<int>", "x[1::2]", "::1", "fe80::1",
    "a::b::c", "ISO 8601", "GB82 WEST 1234 5698 7654 33", "AB12CD34EF56GH78", "AKIA1234",
    "XAKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLEX", f"{SECRET}=", f"{SECRET}x",
    "eyJhbGciOiJIUzI1NiJ9", "icon@2x.png", "@property", "user@localhost", "lodash@4.17.21",
    # prices, quantities, phone-like numbers that are not phones
    "$1,299.99", "€ 1.299,00", "1 000 000 people", "+5 points", "+1500", "555-0132",
    "123-456-7890", "call 015-555-0132", "2024 555 1234", "10%", "3.14159", "0.0.0",
    "+12345", "1-800-FLOWERS",
    # numbers with dots, slashes and mixed separators (cards and SSNs may use them)
    "2024/01/15 2024/01/16 2024/01/17", "2019.2020.2021.2022", "1.234.567,89 EUR",
    "tracking 1Z999AA10123456784", "ISBN 978-0-306-40615-7", "call 0800 123 4567",
    "lot 1234.5678.9012.3456", "2 4 6 8 10 12 14 16 18 20 22 24 26",
    "3 1 4 1 5 9 2 6 5 3 5 8 9 7 9", "1 1 2 3 5 8 13 21 34 55 89", "page 12/345/6789",
    "scores 98-87-76-65-54-43-32", "items 123 456 7890 1234", "ratio 16:9 1920/1080/60",
    "files 2024-01-15.log 2024-01-16.log", "ids 1234/5678 9012/3456",
    "0 0 0 0 0 0 0 0 0 0 0 0 0 0", "room 101 - 102 - 103 - 104 - 105",
    "timestamps 1705312200.123 1705312260.456", "dates 15.01.2024 - 16.01.2024 - 17.01.2024",
    # prose and code
    "The quick brown fox jumps over the lazy dog.",
    "Please summarize the attached class hierarchy and explain the assistant's role.",
    "def f(x: int) -> dict[str, int]:\n    return {'a': 1, 'b': 2}",
    "for (int i = 0; i < 10; ++i) { total += i * 2; }",
    "SELECT id, name FROM users WHERE created_at > '2024-01-15' LIMIT 100;",
    "https://example.com/orders/48213?ref=mail&utm_source=newsletter",
    "let v: Vec<u8> = std::vec::Vec::new(); std::cout << x::add(a, b);",
    "2024-01-15 10:30:00,123 INFO worker-3 request done in 12.5 ms (p99 48 ms)",
]


def test_benign_corpus_has_no_findings() -> None:
    pii = PIIFilter()
    found = {text: [(f.category, text[f.start:f.end]) for f in pii.scan(text)]
             for text in BENIGN}
    assert {text: hits for text, hits in found.items() if hits} == {}
    assert pii.scan("\n".join(BENIGN)) == []


def test_categories_actions_and_window() -> None:
    assert PIIFilter().window == 1024  # jwt
    assert PIIFilter({"email": "log"}).window == 4 * 254  # invisible characters inside
    assert PIIFilter({"us_ssn": "block", "ipv4": "log"}).window == 4 * 15
    pii = PIIFilter({"email": "block", "us_ssn": "log"}, name="people")
    text = "a@b.example and 123-45-6789 and 10.0.0.1"
    assert [(f.filter, f.category, f.action) for f in pii.scan(text)] == [
        ("people", "email", "block"), ("people", "us_ssn", "log")]
    assert {f.action for f in PIIFilter(action="block").scan(text)} == {"block"}
    assert PIIFilter({}).scan(text) == [] and PIIFilter({}).window == 0
    assert PIIFilter().scan("") == []


def test_unknown_category_or_action_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown PII categories: credit, mail") as e:
        PIIFilter({"credit": "block", "mail": "log", "email": "log"})
    assert all(c in str(e.value) for c in CATEGORIES)
    with pytest.raises(ValueError, match="action must be one of"):
        PIIFilter({"email": "drop"})  # type: ignore[dict-item]


def test_redaction_replaces_every_value() -> None:
    text = f"mail a.b@c.example, card 4111 1111 1111 1111, key {SECRET}, tel (415) 555-0132"
    out = redact(text, PIIFilter().scan(text))
    assert out == ("mail [EMAIL], card [CREDIT_CARD], key [AWS_SECRET_KEY], tel [PHONE]")


def test_overlapping_categories_and_nested_matches() -> None:
    text = "mapped ::ffff:192.0.2.1 here"
    assert [(f.category, text[f.start:f.end]) for f in PIIFilter().scan(text)] == [
        ("ipv6", "::ffff:192.0.2.1"), ("ipv4", "192.0.2.1")]
    # one phone reported once even though two phone patterns match it
    assert len(PIIFilter({"phone": "redact"}).scan("+1 415 555 0132")) == 1


def test_non_ascii_text_keeps_offsets() -> None:
    text = "“Café” — mail: zoe@example.com ✉ or 😀 10.0.0.1 😀 card 4111 1111 1111 1111"
    assert [(f.category, text[f.start:f.end]) for f in PIIFilter().scan(text)] == [
        ("email", "zoe@example.com"), ("ipv4", "10.0.0.1"), ("credit_card", "4111 1111 1111 1111")]
    text = "zoë@exämple.com, 連絡先はtaro@example.comです"  # internationalised addresses
    assert [text[f.start:f.end] for f in PIIFilter().scan(text)] == [
        "zoë@exämple.com", "taro@example.com"]


def test_a_long_jwt_is_reported_by_its_first_1024_characters() -> None:
    payload = base64.urlsafe_b64encode(json.dumps({"d": "x" * 2000}).encode()).decode()
    token = f"eyJhbGciOiJub25lIn0.{payload.rstrip('=')}.sig"
    (f,) = PIIFilter({"jwt": "block"}).scan(" " + token)
    assert (f.start, f.end) == (1, 1025)


def test_a_huge_text_is_scanned_quickly() -> None:
    # Gates are single C passes; candidates are validated locally.
    text = ("lorem ipsum 2024-01-15 v1.2.3 " * 2000) + "a@b.example " + ("9" * 5000) + " x:y:z " * 500
    findings = PIIFilter().scan(text)
    assert [f.category for f in findings] == ["email"]


# -- properties --------------------------------------------------------------------------------

def _luhn_complete(prefix: str) -> str:
    total = 0
    for i, c in enumerate(reversed(prefix + "0")):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return prefix + str((10 - total % 10) % 10)


def _card(prefix: str, body: str, spaced: bool) -> str:
    number = _luhn_complete(prefix + body[:15 - len(prefix)])
    return " ".join(number[i:i + 4] for i in range(0, 16, 4)) if spaced else number


def _iban(country: str, bban: str) -> str:
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


def _entropy(s: str) -> float:
    return -sum(n / len(s) * math.log2(n / len(s)) for n in Counter(s).values())


lower = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
values = st.one_of(
    st.tuples(st.just("email"), st.builds(lambda a, b, t: f"{a}@{b}.{t}", lower, lower,
                                          st.sampled_from(["com", "org", "io", "co.uk"]))),
    st.tuples(st.just("credit_card"), st.builds(
        _card, st.sampled_from(["4", "51", "55", "6011", "3530"]),
        st.text(string.digits, min_size=14, max_size=14), st.booleans())),
    st.tuples(st.just("us_ssn"), st.builds(
        lambda a, g, s: f"{a:03d}-{g:02d}-{s:04d}",
        st.integers(1, 899).filter(lambda a: a != 666), st.integers(1, 99),
        st.integers(1, 9999))),
    st.tuples(st.just("ipv4"), st.builds(lambda *o: ".".join(map(str, o)),
                                         *[st.integers(0, 255)] * 4)),
    st.tuples(st.just("ipv6"), st.builds(lambda *g: ":".join(f"{x:x}" for x in g),
                                         *[st.integers(0, 0xFFFF)] * 8)),
    st.tuples(st.just("iban"), st.builds(_iban, st.just("DE"),
                                         st.text(string.digits, min_size=18, max_size=18))),
    st.tuples(st.just("phone"), st.builds(
        lambda a, e, n: f"({a}) {e}-{n:04d}", st.integers(200, 999), st.integers(200, 999),
        st.integers(0, 9999))),
    st.tuples(st.just("aws_access_key_id"), st.builds(
        lambda p, s: p + s, st.sampled_from(["AKIA", "ASIA", "AROA"]),
        st.text(string.ascii_uppercase + string.digits, min_size=16, max_size=16))),
    st.tuples(st.just("aws_secret_key"), st.text(
        string.ascii_letters + string.digits + "/+", min_size=40, max_size=40).filter(
        lambda s: s.count("/") <= 3 and any(c.isdigit() for c in s) and s.lower() != s
        and s.upper() != s and _entropy(s) >= 4.4)),
    st.tuples(st.just("jwt"), st.builds(
        lambda sub, sig: ".".join([
            base64.urlsafe_b64encode(b'{"alg":"HS256"}').decode().rstrip("="),
            base64.urlsafe_b64encode(json.dumps({"sub": sub}).encode()).decode().rstrip("="),
            sig]),
        lower, st.text(string.ascii_letters + string.digits + "-_", min_size=10, max_size=43))),
)
filler = st.lists(st.sampled_from(
    ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "then", "prices",
     "rose", "by", "10%", "in", "2024-01-15", "for", "class", "assistant", "data", ",", "."]),
    max_size=12).map(" ".join)


@settings(max_examples=300)
@given(st.lists(st.tuples(filler, values), min_size=1, max_size=4), filler)
def test_planted_values_are_found_and_redacted(parts: list[tuple[str, tuple[str, str]]],
                                               tail: str) -> None:
    text, planted = "", []
    for before, (category, value) in parts:
        text += before + " "
        planted.append((category, len(text), value))
        text += value + " "
    text += tail
    pii = PIIFilter()
    findings = pii.scan(text)
    for f in findings:
        assert 0 <= f.start < f.end <= len(text)
    spans = {(f.category, f.start, text[f.start:f.end]) for f in findings}
    for category, start, value in planted:
        assert (category, start, value) in spans or any(
            f.start <= start and start + len(value) <= f.end for f in findings), (category, value)
    redacted = redact(text, findings)
    for _, _, value in planted:
        assert value not in redacted
    assert pii.scan(redacted) == []


@given(st.lists(st.one_of(st.just(0), st.integers(0, 0xFFFF)), min_size=8, max_size=8),
       st.booleans())
def test_every_ipv6_form_with_three_groups_is_found(groups: list[int], exploded: bool) -> None:
    address = ipaddress.IPv6Address(sum(g << 16 * (7 - i) for i, g in enumerate(groups)))
    text = address.exploded if exploded else address.compressed
    shown = sum(1 for g in text.split(":") if g)
    found = [(f.category, f.start, f.end) for f in PIIFilter({"ipv6": "log"}).scan(f"ip {text}.")]
    assert found == ([("ipv6", 3, 3 + len(text))] if shown >= 3 else [])


@given(st.text(alphabet=string.printable, max_size=300))
def test_spans_are_always_within_the_text(text: str) -> None:
    for f in PIIFilter().scan(text):
        assert isinstance(f, Finding) and 0 <= f.start < f.end <= len(text)
