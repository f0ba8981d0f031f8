# ruff: noqa: RUF002  (lookalike characters are part of the rules)
"""Personal data and secrets: e-mail addresses, phone numbers, card numbers and more.

:class:`PIIFilter` finds these categories (``categories=None``: all of them, with ``action``;
a mapping: some, each with its own action)::

    PIIFilter({"email": "redact", "aws_secret_key": "block"})

=====================  ======================================================================
``email``              ``local@domain.tld``, local part ≤ 64, address ≤ 254, a letters-only
                       TLD that is not a file extension (``icon@2x.png`` is no address);
                       internationalised: letters of any script (``zoë@exämple.de``,
                       ``иван@пример.рф``); an address touching CJK/Thai text starts and ends
                       where its ASCII does (``連絡先はtaro@example.comです``)
``phone``              ``+`` and 8-15 digits in groups (``+44 20 7946 0958``, ``+14155550132``);
                       NANP ``(415) 555-0132``, ``415-555-0132``, ``415.555.0132``,
                       ``1 415 555 0132`` (area, exchange 2-9xx). No other national forms.
``credit_card``        13-19 digits, unseparated or in groups (4-4-4-4…, 4-6-5, 4-6-4, or a whole
                       run of single digits with one kind of separator), separated by runs of
                       one to three of space, ``-``, ``.``, ``/`` (mixed: ``4111 1111-1111.1111``;
                       any dash or space folds to these), a known issuer prefix and length
                       (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Mir, Maestro),
                       a valid Luhn digit; a card among more digit groups counts
``us_ssn``             ``AAA-GG-SSSS`` separated as cards are (``123 45 6789``, ``123–45–6789``),
                       not area 000/666/9xx, group 00, serial 0000
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

**Unicode.** Text is scanned folded (``filters/fold.py``), as a reader sees it: zero-width
characters, soft hyphens and combining marks removed, every space (NBSP …) a space, every dash
``-``, digits of any script and fullwidth forms ASCII (``bob＠example．com``, ``４１１１ …``).
Spans are offsets into the original text, the invisible characters inside a match included.

**Speed.** Each category has a gate: a pattern led by a literal, run over a *shape* of the text
(bytes where each digit is ``0``, each letter ``A``/``a``, each separator ``s``, or each key
character ``x``): 13+ digits in groups led by four (or 13+ single digits) for cards, ``@``
after an address character, 20 key
characters for AWS keys. ``bytes.find`` skips to the first possible hit, so text without one
costs a few C passes; exact patterns and checks (Luhn, mod-97, octets, :mod:`ipaddress`) run
only near hits; ASCII text is not folded (one ``str.isascii``). ``window``: the longest match
an enabled category can produce, times 4 for invisible characters inside it (jwt: 1024).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from bedrock_gateway.filters import pii_checks as c
from bedrock_gateway.filters.base import ACTIONS, Action, Finding
from bedrock_gateway.filters.fold import fold, span

__all__ = ["CATEGORIES", "PIIFilter"]

CATEGORIES = ("email", "phone", "credit_card", "us_ssn", "iban", "ipv4", "ipv6",
              "aws_access_key_id", "aws_secret_key", "jwt")
JWT_MAX = c.JWT_MAX
WINDOW_FACTOR = 4  # a match can be this much longer in the original than folded (invisibles)
_SHAPE = bytes.maketrans(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                         b"0" * 10 + b"A" * 26 + b"a" * 26)
_TOKEN = bytes(120 if b < 128 and (chr(b).isalnum() or chr(b) in "/+") else 32
               for b in range(256))
_DIGITS = bytes(48 if chr(b).isdigit() and b < 128 else 115 if chr(b) in c.SEPARATORS else 120
                for b in range(256))  # digits "0", separators "s", the rest "x"
Span = c.Span


# -- detectors -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Detector:
    category: str
    buffer: str  # what the gate scans: "raw" (ASCII, "?" for others), "shape", "token", "digits"
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
    # "?": a character that is not ASCII (internationalised addresses)
    _Detector("email", "shape", re.compile(rb"@(?<=[Aa0_.%+\-?]@)[Aa0?]"), b"@", 0, c.email),
    _Detector("phone", "shape", re.compile(rb"\+0"), b"+0", 32,
              _around(c.PHONE_INTL, c.phone_intl)),
    _Detector("phone", "shape", re.compile(rb"0000(?<=[\-. ]0000)(?<=[\-. )]000[\-. ]0000)"),
              b"0000", 18, _around(c.PHONE_NANP, c.whole)),
    # every card form starts with four digits or more, but a run of single digits
    _Detector("credit_card", "digits", re.compile(rb"0000(?:s{0,3}+0){9,}+"), b"0000", 0,
              c.card),
    _Detector("credit_card", "digits", re.compile(rb"0s0s0s0(?:s0){9,}+"), b"0s0s0s0", 0,
              c.card),
    _Detector("us_ssn", "digits", re.compile(rb"000s{1,3}+00s{1,3}+0000"), b"000s", 15,
              _around(c.SSN, c.whole)),
    _Detector("iban", "shape", re.compile(rb"AA00"), b"AA00", 42, _around(c.IBAN, c.iban)),
    _Detector("ipv4", "shape", re.compile(rb"0\.0{1,3}\.0{1,3}\.0"), b"0.", 15,
              _around(c.IPV4, c.ipv4)),
    _Detector("ipv6", "raw", _IPV6_GATE, b":", 45, _around(c.IPV6, c.ipv6)),
    _Detector("aws_access_key_id", "token", _KEY_RUN, b"x" * 20, 0, c.aws_key_id),
    _Detector("aws_secret_key", "token", _KEY_RUN, b"x" * 20, 0, c.aws_secret),
    _Detector("jwt", "raw", re.compile(rb"eyJ"), b"eyJ", 0, c.jwt),
)
_TABLES = {"shape": _SHAPE, "token": _TOKEN, "digits": _DIGITS}
_LONGEST = {"email": 254, "phone": 32, "credit_card": 37, "us_ssn": 15, "iban": 42, "ipv4": 15,
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
        # in the original text a match may be longer than folded (invisible characters)
        self.window = max((_LONGEST[c] * (1 if c == "jwt" else WINDOW_FACTOR) for c in chosen),
                          default=0)

    def scan(self, text: str) -> list[Finding]:
        if not self._detectors or not text:
            return []
        folded, segments = fold(text)
        findings = self._scan(folded)
        if folded is text:
            return findings
        return [Finding(f.filter, f.category, *span(segments, f.start, f.end), f.action)
                for f in findings]

    def _scan(self, text: str) -> list[Finding]:
        raw = text.encode("ascii", "replace")  # one byte per character
        buffers = {"raw": raw}
        hits: dict[re.Pattern[bytes], list[re.Match[bytes]]] = {}  # gates some detectors share
        spans: list[tuple[int, int, str]] = []
        for d in self._detectors:
            if d.buffer not in buffers:
                buffers[d.buffer] = raw.translate(_TABLES[d.buffer])
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
