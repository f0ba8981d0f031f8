"""The checks behind each PII category (``filters/pii.py`` has the filter, gates and docs).

Every function here reads *folded* text (``filters/fold.py``): ASCII digits, spaces, ``-`` for
every dash, invisible characters gone. ``find(text, lo, hi)`` functions get a gate hit (or a zone
around one) and yield the spans of the values they confirm there.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Iterator

Span = tuple[int, int]
_A = re.ASCII
JWT_MAX = 1024


def _words(s: str) -> list[str]:
    return s.split()


def whole(text: str, m: re.Match[str]) -> Iterator[Span]:
    yield m.span()


# -- email -----------------------------------------------------------------------------------
_LOCAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
# Internationalised: labels of letters and digits of any script; a TLD of letters. The TLD is
# cut where ASCII letters meet others ("taro@example.comです": "com").
_DOMAIN = re.compile(r"(?:(?:[^\W_]|-){1,63}+\.){1,10}([^\W\d_]{2,63}+)(?![^\W_]|-)")
_TLD_SPLIT = re.compile(r"[A-Za-z]+|[^A-Za-z]+")
_FILE_EXTENSIONS = frozenset(_words(
    "png jpg jpeg gif svg webp ico bmp css js mjs ts tsx jsx json html htm txt yaml yml"))


def _unspaced(c: str) -> bool:
    """A character of a script written without spaces (CJK, kana, Hangul, Thai, ...): text in
    such a script can touch an address with no separator in between."""
    o = ord(c)
    return o >= 0x2E80 or 0x0E00 <= o < 0x0F00 or 0x1000 <= o < 0x10A0 or 0x1780 <= o < 0x1800


def email(text: str, at: int, _: int) -> Iterator[Span]:
    start, ascii_seen = at, False
    while start > 0 and at - start <= 64:
        c = text[start - 1]
        if c in _LOCAL:
            ascii_seen = True
        elif c.isascii() or not c.isalnum() or (ascii_seen and _unspaced(c)):
            break
        start -= 1
    while start < at and text[start] == ".":
        start += 1
    domain = _DOMAIN.match(text, at + 1)
    if not (0 < at - start <= 64 and domain):
        return
    tld = _TLD_SPLIT.match(domain.group(1))
    end = domain.start(1) + (tld.end() if tld else 0)
    if end - domain.start(1) >= 2 and end - start <= 254 and text[
            domain.start(1):end].lower() not in _FILE_EXTENSIONS:
        yield start, end


# -- phone -----------------------------------------------------------------------------------
PHONE_INTL = re.compile(r"(?<![\w+])\+[1-9]\d{0,3}(?:[ .\-]?\(?\d{1,6}+\)?){1,7}+(?!\w)", _A)
PHONE_NANP = re.compile(r"(?<![\w+.\-/])(?:1[ .\-]?)?(?:\([2-9]\d\d\) ?|[2-9]\d\d[ .\-])"
                         r"[2-9]\d\d[ .\-]\d{4}(?![\w\-/]|\.\d)", _A)


def phone_intl(text: str, m: re.Match[str]) -> Iterator[Span]:
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


def _luhn_iin(digits: str) -> bool:
    """A known issuer prefix for this length, and a valid Luhn check digit."""
    if not any(len(digits) in _IIN.get(digits[:k], ()) for k in (1, 2, 3, 4)):
        return False
    luhn = sum(map(int, digits[-1::-2])) + sum(map(_DOUBLED.__getitem__, digits[-2::-2]))
    return luhn % 10 == 0


_FIRST = frozenset({1, 4, *range(13, 20)})  # how long the first group of a card can be
SEPARATORS = " -./"  # between digit groups, in runs of one to three (after folding)
_GROUPS = re.compile(r"([ \-./]{1,3})")


def _card_at(lens: list[int], groups: list[str], seps: list[str], i: int, last: int) -> int:
    """The last group of the longest card starting at group ``i`` (-1: none)."""
    n = lens[i]
    if 13 <= n <= 19:
        return i if _luhn_iin(groups[i]) else -1
    if n == 1:  # a whole run of single digits, one kind of separator
        j = i
        while j < last and lens[j + 1] == 1:
            j += 1
        ok = (13 <= j - i + 1 <= 19 and (i == 0 or lens[i - 1] != 1)
              and len(set(seps[i:j])) == 1 and _luhn_iin("".join(groups[i:j + 1])))
        return j if ok else -1
    if n != 4 or i == last or lens[i + 1] not in (4, 6):
        return -1
    if lens[i + 1] == 6:  # 4-6-5, 4-6-4 (Amex, Diners)
        ok = i + 2 <= last and lens[i + 2] in (4, 5)
        return i + 2 if ok and _luhn_iin("".join(groups[i:i + 3])) else -1
    j, total = i, 4  # 4-4-4-4…, the last group 1-4 digits
    while j < last and lens[j + 1] <= 4 and total + lens[j + 1] <= 19:
        j += 1
        total += lens[j]
        if lens[j] < 4:
            break
    while j - i >= 3:
        if total >= 13 and _luhn_iin("".join(groups[i:j + 1])):
            return j
        total -= lens[j]
        j -= 1
    return -1


def card(text: str, start: int, end: int) -> Iterator[Span]:
    """Cards in a run of 13 or more digits in groups: from each group on, the longest valid
    card of whole groups. Separators may be mixed (``4111 1111-1111.1111``); single digits
    (``4 1 1 1 …``) count only as a whole run of them, with one kind of separator."""
    parts = _GROUPS.split(text[start:end])  # group, separator, group, ...
    groups, seps = parts[::2], parts[1::2]
    lens = [len(g) for g in groups]
    i, last = 0, len(groups) - 1
    before = text[start - 2:start] if start > 1 else " " + text[:start]
    if (before[-1:].isalnum() or before[-1:] in ("_", ".", "+")
            or (before[-1:] == "-" and (before[0].isalpha() or before[0] in "._"))):
        i = 1  # the first group is glued to something else (a word, a version, a sign)
    if text[end:end + 1].isalnum():
        last -= 1
    while i <= last:
        if lens[i] in _FIRST:
            j = _card_at(lens, groups, seps, i, last)
            if j >= 0:
                at = start + sum(lens[:i]) + sum(map(len, seps[:i]))
                yield at, at + sum(lens[i:j + 1]) + sum(map(len, seps[i:j]))
                i = j
        i += 1


# -- US SSN, IBAN ----------------------------------------------------------------------------
SSN = re.compile(r"(?<![\w\-./])(?!000|666|9)\d{3}[ \-./]{1,3}+(?!00)\d{2}[ \-./]{1,3}+"
                  r"(?!0000)\d{4}(?![\w\-]|[./]\d)", _A)
IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d\d(?: ?[A-Z0-9]){10,32}+", _A)
_IBAN_LENGTHS = {spec[:2]: int(spec[2:]) for spec in _words(
    "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DJ27"
    " DK18 DO28 EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22"
    " IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25 MC27 MD24 ME22 MK19"
    " MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24 PL28 PS29 PT25 QA29 RO24 RS22 RU33 SA24 SC31"
    " SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20")}


def iban(text: str, m: re.Match[str]) -> Iterator[Span]:
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
IPV4 = re.compile(rf"(?<![\w.])(?<![A-Za-z_]-){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\w)", _A)
_VERSION_WORD = re.compile(r"(?i)\b(?:v|ver|version|release|rel|build|rev|revision|python|node|"
                           r"java|ruby|php|kernel|firmware|fw|update|patch|sdk)\.?"
                           r"\s{0,3}[:=]?\s{0,3}\Z")
IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}+"
                   rf"(?:{_OCTET}(?:\.{_OCTET}){{3}}|[0-9A-Fa-f]{{1,4}})?+(?![\w:]|\.\d)", _A)


def ipv4(text: str, m: re.Match[str]) -> Iterator[Span]:
    if not _VERSION_WORD.search(text, max(0, m.start() - 24), m.start()):
        yield m.span()


def ipv6(text: str, m: re.Match[str]) -> Iterator[Span]:
    s = m.group()
    with contextlib.suppress(ValueError):  # groups: an embedded IPv4 address counts as two
        if ipaddress.IPv6Address(s) and sum(1 for g in s.split(":") if g) + ("." in s) >= 3:
            yield m.span()


# -- keys and tokens -------------------------------------------------------------------------
_AWS_KEY_ID = re.compile(r"(?:AKIA|ASIA|AIDA|AROA|AGPA|AIPA|ANPA|ANVA|APKA|ABIA|ACCA|ASCA"
                         r"|A3T[A-Z0-9])[A-Z0-9]{16}")
JWT = re.compile(r"(?<![\w\-])eyJ[\w\-]{2,}+\.eyJ[\w\-]{2,}+\.[\w\-]*+", _A)


def aws_key_id(text: str, start: int, end: int) -> Iterator[Span]:
    if end - start == 20 and _AWS_KEY_ID.fullmatch(text, start, end):
        yield start, end


def aws_secret(text: str, start: int, end: int) -> Iterator[Span]:
    s = text[start:end]
    if (end - start == 40 and text[end:end + 1] != "=" and s.count("/") <= 3
            and s.lower() != s != s.upper() and any(c.isdigit() for c in s)
            and -sum(n / 40 * math.log2(n / 40) for n in Counter(s).values()) >= 4.3):
        yield start, end


def jwt(text: str, start: int, _: int) -> Iterator[Span]:
    if m := JWT.match(text, start):
        yield start, min(m.end(), start + JWT_MAX)

