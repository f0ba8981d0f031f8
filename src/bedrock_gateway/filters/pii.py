"""Personal data and secrets: e-mail addresses, phone numbers, card numbers and more.

:class:`PIIFilter` finds these categories (``categories=None``: all of them, with ``action``;
a mapping: some, each with its own action)::

    PIIFilter({"email": "redact", "aws_secret_key": "block"})

=====================  ======================================================================
``email``              ASCII ``local@domain.tld``, local part ≤ 64, address ≤ 254, a letters-only
                       TLD that is not a file extension (``icon@2x.png`` is no address)
``phone``              ``+`` and 8-15 digits in groups (``+44 20 7946 0958``, ``+14155550132``);
                       NANP ``(415) 555-0132``, ``415-555-0132``, ``415.555.0132``,
                       ``1 415 555 0132`` (area, exchange 2-9xx). No other national forms.
``credit_card``        13-19 digits, unseparated or in groups (4-4-4-4…, 4-6-5, 4-6-4) with one
                       kind of separator (space or ``-``), a known issuer prefix and length
                       (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Mir, Maestro),
                       a valid Luhn digit; a card among more digit groups counts
``us_ssn``             ``AAA-GG-SSSS`` (dashes), not area 000/666/9xx, group 00, serial 0000
``iban``               upper-case country code, check digits, BBAN, unseparated or in groups of
                       four; the country's length and the mod-97 checksum must be right
``ipv4``               four dotted octets 0-255 without leading zeros; see *versions*
``ipv6``               what :mod:`ipaddress` accepts, with at least three groups (not ``::1``,
                       ``fe80::1`` or ``a[1::2]``)
``aws_access_key_id``  ``AKIA``/``ASIA``/``AIDA``/``AROA``/… + 16 upper-case letters or digits
``aws_secret_key``     exactly 40 of ``[A-Za-z0-9/+]``, not followed by ``=``, with both cases
                       and a digit, ≤ 3 ``/``, ≥ 4.3 bits of entropy a character: 99.9 % of
                       random keys, no digest, word, path or identifier, any random base64
``jwt``                three base64url segments, the first two starting ``eyJ``; reported by
                       its first 1024 characters at most
=====================  ======================================================================

Keys and tokens must not be part of a longer token. **Versions:** a dotted quad is no IPv4
address when glued to a letter, digit, ``_`` or ``.`` (``v2.7.18.1``, ``10.0.19041.1.5``,
``lib-1.2.3.4.so``) or when the word before it is a version word (``version``, ``ver``, ``v``,
``release``, ``build``, ``rev``, ``python``, ``node``, ``java``, ``kernel``, ``firmware``,
``update``, ``patch`` …: "Python 2.7.18.1"); a bare ``2.7.18.1`` is one. Dates, version
triples, UUIDs, digests, prices and order numbers do not match (the tests keep such a corpus).

**Speed.** Each category has a gate: a pattern led by a literal, run over a *shape* of the text
(bytes where each digit is ``0``, each letter ``A``/``a``, or each key character ``x``):
13+ digits in groups starting ``0000`` for cards, ``@`` after an address character, 20 key
characters for AWS keys. ``bytes.find`` skips to the first possible hit, so text without one
costs a few C passes; exact patterns and checks (Luhn, mod-97, octets, :mod:`ipaddress`) run
only near hits. ``window``: the longest match an enabled category can produce (jwt: 1024).
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from bedrock_gateway.filters.base import ACTIONS, Action, Finding

__all__ = ["CATEGORIES", "PIIFilter"]

CATEGORIES = ("email", "phone", "credit_card", "us_ssn", "iban", "ipv4", "ipv6",
              "aws_access_key_id", "aws_secret_key", "jwt")
JWT_MAX = 1024
_A = re.ASCII
_SHAPE = bytes.maketrans(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                         b"0" * 10 + b"A" * 26 + b"a" * 26)
_TOKEN = bytes(120 if b < 128 and (chr(b).isalnum() or chr(b) in "/+") else 32
               for b in range(256))
Span = tuple[int, int]


def _words(s: str) -> list[str]:
    return s.split()


def _whole(text: str, m: re.Match[str]) -> Iterator[Span]:
    yield m.span()


# -- email -----------------------------------------------------------------------------------
_LOCAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9\-]{1,63}+\.){1,10}([A-Za-z]{2,63})(?![A-Za-z0-9\-])")
_FILE_EXTENSIONS = frozenset(_words(
    "png jpg jpeg gif svg webp ico bmp css js mjs ts tsx jsx json html htm txt yaml yml"))


def _email(text: str, at: int, _: int) -> Iterator[Span]:
    start = at
    while start > 0 and at - start <= 64 and text[start - 1] in _LOCAL:
        start -= 1
    while start < at and text[start] == ".":
        start += 1
    domain = _DOMAIN.match(text, at + 1)
    if (0 < at - start <= 64 and domain and domain.end() - start <= 254
            and domain.group(1).lower() not in _FILE_EXTENSIONS):
        yield start, domain.end()


# -- phone -----------------------------------------------------------------------------------
_PHONE_INTL = re.compile(r"(?<![\w+])\+[1-9]\d{0,3}(?:[ .\-]?\(?\d{1,6}+\)?){1,7}+(?!\w)", _A)
_PHONE_NANP = re.compile(r"(?<![\w+.\-/])(?:1[ .\-]?)?(?:\([2-9]\d\d\) ?|[2-9]\d\d[ .\-])"
                         r"[2-9]\d\d[ .\-]\d{4}(?![\w\-/]|\.\d)", _A)


def _phone_intl(text: str, m: re.Match[str]) -> Iterator[Span]:
    s = m.group()
    parentheses = s.count("(") == s.count(")") <= 1
    if 8 <= sum(c.isdigit() for c in s) <= 15 and len(s) <= 32 and parentheses:
        yield m.span()


# -- credit cards ----------------------------------------------------------------------------
def _iin_table(spec: str) -> dict[str, frozenset[int]]:
    """Issuer prefix -> card lengths, from ``prefix[-prefix]:length[-length|,length]`` items."""
    table: dict[str, frozenset[int]] = {}
    for item in spec.split():
        prefixes, _, lengths = item.partition(":")
        lo, _, hi = prefixes.partition("-")
        sizes = frozenset(n for part in lengths.split(",") for a, _, b in [part.partition("-")]
                          for n in range(int(a), int(b or a) + 1))
        table.update(dict.fromkeys(map(str, range(int(lo), int(hi or lo) + 1)), sizes))
    return table


_IIN = _iin_table("4:13,16,19 51-55:16 2221-2720:16 34:15 37:15 6011:16-19 644-649:16-19"
                  " 65:16-19 3528-3589:16-19 300-305:14-19 36:14-19 38-39:16-19 62:16-19"
                  " 2200-2204:16-19 50:13-19 56-58:13-19 639:13-19 67:13-19")
_DOUBLED = {str(d): 2 * d - 9 if d > 4 else 2 * d for d in range(10)}


def _is_card(groups: list[str]) -> bool:
    lens = [len(g) for g in groups]
    if not ((len(lens) == 1 and 13 <= lens[0] <= 19) or lens in ([4, 6, 5], [4, 6, 4])
            or (len(lens) >= 4 and set(lens[:-1]) == {4} and lens[-1] <= 4)):
        return False
    digits = "".join(groups)
    if not any(len(digits) in _IIN.get(digits[:k], ()) for k in (1, 2, 3, 4)):
        return False
    luhn = sum(map(int, digits[-1::-2])) + sum(map(_DOUBLED.__getitem__, digits[-2::-2]))
    return luhn % 10 == 0


def _card(text: str, start: int, end: int) -> Iterator[Span]:
    """Cards in a run of 13 or more digits in groups, starting with four digits: the longest
    valid window of whole groups, with one kind of separator, from each group on."""
    before = text[start - 2:start] if start > 1 else " " + text[:start]
    if (before[-1:].isalnum() or before[-1:] in ("_", ".", "+") or text[end:end + 1].isalnum()
            or (before[-1:] == "-" and (before[0].isalpha() or before[0] in "._"))):
        return
    parts = re.split(r"([ \-])", text[start:end])  # group, separator, group, ...
    groups, seps = parts[::2], parts[1::2]
    offsets = [start]
    for group in groups[:-1]:
        offsets.append(offsets[-1] + len(group) + 1)
    i = 0
    while i < len(groups):
        windows, total = [], 0  # (i, j): groups i..j with 13-19 digits and one separator
        for j in range(i, min(len(groups), i + 5)):
            total += len(groups[j])
            if total > 19 or (j > i + 1 and seps[j - 1] != seps[i]):
                break
            if total >= 13:
                windows.append(j)
        for j in reversed(windows):
            if _is_card(groups[i:j + 1]):
                yield offsets[i], offsets[j] + len(groups[j])
                i = j
                break
        i += 1


# -- US SSN, IBAN ----------------------------------------------------------------------------
_SSN = re.compile(r"(?<![\w\-])(?!000|666|9)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w\-])", _A)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d\d(?: ?[A-Z0-9]){10,32}+", _A)
_IBAN_LENGTHS = {spec[:2]: int(spec[2:]) for spec in _words(
    "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DJ27"
    " DK18 DO28 EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22"
    " IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25 MC27 MD24 ME22 MK19"
    " MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24 PL28 PS29 PT25 QA29 RO24 RS22 RU33 SA24 SC31"
    " SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20")}


def _iban(text: str, m: re.Match[str]) -> Iterator[Span]:
    s, length = m.group(), _IBAN_LENGTHS.get(m.group()[:2], 0)
    chars = [i for i, c in enumerate(s) if c != " "][:length]
    if not length or len(chars) < length:
        return
    end = chars[-1] + 1
    spaced = [k for k, i in enumerate(chars) if i and s[i - 1] == " "]
    compact = s[:end].replace(" ", "")
    if (spaced and spaced != list(range(4, length, 4))) or text[m.start() + end:][:1].isalnum():
        return
    if int("".join(str(int(c, 36)) for c in compact[4:] + compact[:4])) % 97 == 1:
        yield m.start(), m.start() + end


# -- IP addresses ----------------------------------------------------------------------------
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.])(?<![A-Za-z_]-){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\w)", _A)
_VERSION_WORD = re.compile(r"(?i)\b(?:v|ver|version|release|rel|build|rev|revision|python|node|"
                           r"java|ruby|php|kernel|firmware|fw|update|patch|sdk)\.?"
                           r"\s{0,3}[:=]?\s{0,3}\Z")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}+"
                   rf"(?:{_OCTET}(?:\.{_OCTET}){{3}}|[0-9A-Fa-f]{{1,4}})?+(?![\w:]|\.\d)", _A)


def _ipv4(text: str, m: re.Match[str]) -> Iterator[Span]:
    if not _VERSION_WORD.search(text, max(0, m.start() - 24), m.start()):
        yield m.span()


def _ipv6(text: str, m: re.Match[str]) -> Iterator[Span]:
    s = m.group()
    with contextlib.suppress(ValueError):  # groups: an embedded IPv4 address counts as two
        if ipaddress.IPv6Address(s) and sum(1 for g in s.split(":") if g) + ("." in s) >= 3:
            yield m.span()


# -- keys and tokens -------------------------------------------------------------------------
_AWS_KEY_ID = re.compile(r"(?:AKIA|ASIA|AIDA|AROA|AGPA|AIPA|ANPA|ANVA|APKA|ABIA|ACCA|ASCA"
                         r"|A3T[A-Z0-9])[A-Z0-9]{16}")
_JWT = re.compile(r"(?<![\w\-])eyJ[\w\-]{2,}+\.eyJ[\w\-]{2,}+\.[\w\-]*+", _A)


def _aws_key_id(text: str, start: int, end: int) -> Iterator[Span]:
    if end - start == 20 and _AWS_KEY_ID.fullmatch(text, start, end):
        yield start, end


def _aws_secret(text: str, start: int, end: int) -> Iterator[Span]:
    s = text[start:end]
    if (end - start == 40 and text[end:end + 1] != "=" and s.count("/") <= 3
            and s.lower() != s != s.upper() and any(c.isdigit() for c in s)
            and -sum(n / 40 * math.log2(n / 40) for n in Counter(s).values()) >= 4.3):
        yield start, end


def _jwt(text: str, start: int, _: int) -> Iterator[Span]:
    if m := _JWT.match(text, start):
        yield start, min(m.end(), start + JWT_MAX)


# -- detectors -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Detector:
    category: str
    buffer: str  # what the gate scans: "raw" (ASCII, "?" for others), "shape" or "token"
    gate: re.Pattern[bytes]
    hint: bytes  # how every gate hit starts: bytes.find skips to the first one (or all of them)
    pad: int  # how far around a gate hit a match can reach (0: the hit is the candidate)
    find: Callable[[str, int, int], Iterator[Span]]  # (text, zone start, zone end)


def _around(rx: re.Pattern[str], check: Callable[[str, re.Match[str]], Iterator[Span]]
            ) -> Callable[[str, int, int], Iterator[Span]]:
    def find(text: str, lo: int, hi: int) -> Iterator[Span]:
        limit = hi - 2 if hi < len(text) else hi  # lookaheads near hi saw a cut text
        for m in rx.finditer(text, lo, hi):
            if m.end() <= limit:
                yield from check(text, m)
    return find


_KEY_RUN = re.compile(b"x" * 20 + b"x*")
# Three groups hold "::X" (X: hex not followed by a letter: not "std::vector"), "X:Y::" or
# "X:Y:Z:" (not a time, 10:30:00).
_IPV6_GATE = re.compile(rb":(?::[0-9A-Fa-f]{1,4}(?![G-Zg-z_])"
                        rb"|[0-9A-Fa-f]{1,4}:(?::|[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:))")
_DETECTORS = (
    _Detector("email", "shape", re.compile(rb"@(?<=[Aa0_.%+\-]@)[Aa0]"), b"@", 0, _email),
    _Detector("phone", "shape", re.compile(rb"\+0"), b"+0", 32, _around(_PHONE_INTL, _phone_intl)),
    _Detector("phone", "shape", re.compile(rb"0000(?<=[\-. ]0000)(?<=[\-. )]000[\-. ]0000)"),
              b"0000", 18, _around(_PHONE_NANP, _whole)),
    _Detector("credit_card", "shape", re.compile(rb"0000(?:[ \-]?0){9,}+"), b"0000", 0,
              _card),
    _Detector("us_ssn", "shape", re.compile(rb"000-00-0000"), b"000-00-0000", 11,
              _around(_SSN, _whole)),
    _Detector("iban", "shape", re.compile(rb"AA00"), b"AA00", 42, _around(_IBAN, _iban)),
    _Detector("ipv4", "shape", re.compile(rb"0\.0{1,3}\.0{1,3}\.0"), b"0.", 15,
              _around(_IPV4, _ipv4)),
    _Detector("ipv6", "raw", _IPV6_GATE, b":", 45, _around(_IPV6, _ipv6)),
    _Detector("aws_access_key_id", "token", _KEY_RUN, b"x" * 20, 0, _aws_key_id),
    _Detector("aws_secret_key", "token", _KEY_RUN, b"x" * 20, 0, _aws_secret),
    _Detector("jwt", "raw", re.compile(rb"eyJ"), b"eyJ", 0, _jwt),
)
_LONGEST = {"email": 254, "phone": 32, "credit_card": 23, "us_ssn": 11, "iban": 42, "ipv4": 15,
            "ipv6": 45, "aws_access_key_id": 20, "aws_secret_key": 40, "jwt": JWT_MAX}


class PIIFilter:
    """Finds personal data and secrets (see the module docs for each category's rules)."""

    def __init__(self, categories: Mapping[str, Action] | None = None, *,
                 action: Action = "redact", name: str = "pii") -> None:
        chosen = dict.fromkeys(CATEGORIES, action) if categories is None else dict(categories)
        if unknown := sorted(set(chosen) - set(CATEGORIES)):
            raise ValueError(f"unknown PII categories: {', '.join(unknown)}"
                             f" (valid: {', '.join(CATEGORIES)})")
        if bad := sorted(c for c, a in chosen.items() if a not in ACTIONS):
            raise ValueError(f"PII categories {', '.join(bad)}: action must be one of "
                             f"{', '.join(ACTIONS)}")
        self.name, self.actions = name, chosen
        self._detectors = [d for d in _DETECTORS if d.category in chosen]
        self.window = max((_LONGEST[c] for c in chosen), default=0)

    def scan(self, text: str) -> list[Finding]:
        if not self._detectors or not text:
            return []
        raw = text.encode("ascii", "replace")  # one byte per character
        buffers = {"raw": raw}
        hits: dict[re.Pattern[bytes], list[re.Match[bytes]]] = {}  # gates some detectors share
        spans: list[tuple[int, int, str]] = []
        for d in self._detectors:
            if d.buffer not in buffers:
                buffers[d.buffer] = raw.translate(_SHAPE if d.buffer == "shape" else _TOKEN)
            if d.gate not in hits:
                first = buffers[d.buffer].find(d.hint)
                hits[d.gate] = [] if first < 0 else list(
                    d.gate.finditer(buffers[d.buffer], first))
            if not d.pad:  # the hit is the candidate
                for hit in hits[d.gate]:
                    spans += [(s, e, d.category) for s, e in d.find(text, *hit.span())]
                continue
            zones: list[list[int]] = []  # merged areas around hits
            for hit in hits[d.gate]:
                lo, hi = hit.start() - d.pad, hit.end() + d.pad + 2
                if zones and lo <= zones[-1][1]:
                    zones[-1][1] = hi
                else:
                    zones.append([max(0, lo), hi])
            for lo, hi in zones:
                spans += [(s, e, d.category) for s, e in d.find(text, lo, min(hi, len(text)))]
        findings: list[Finding] = []
        covered: dict[str, int] = {}  # category -> end of its last finding
        for start, end, category in sorted(set(spans), key=lambda f: (f[0], -f[1])):
            if end > covered.get(category, -1):  # not inside one of the same category
                covered[category] = end
                findings.append(Finding(self.name, category, start, end, self.actions[category]))
        return findings
