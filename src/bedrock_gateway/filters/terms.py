# ruff: noqa: RUF001, RUF002  (lookalike characters are this module's subject)
"""Deny terms: words and phrases, matched the way a person would read them.

:class:`DenyTermsFilter` reports every occurrence of a listed word or phrase::

    DenyTermsFilter(["project titan", "ass"]).scan("Ｐｒｏｊｅｃｔ—Тitan")   # one finding

**Normalization.** Text and terms are folded the same way, character by character:
compatibility decomposition (NFKD, which also folds fullwidth and other width forms, ligatures,
circled and mathematical letters), case folding (``casefold``), removal of combining marks
("bád" reads "bad"), of format/invisible characters (zero-width space/joiners U+200B–U+200D,
word joiner U+2060, BOM U+FEFF, soft hyphen U+00AD, bidi controls, tag characters, Hangul fillers)
and a small confusables map that folds common Cyrillic, Greek, Armenian and Latin lookalikes to
Latin (``а``→a, ``е``→e, ``р``→p, ``ѕ``→s, Greek ``ο``→o, ``ν``→v, ``ı``→i …). Every other
character that is not a letter or digit counts as a separator. Digits are *not* folded to
letters: "h4te" does not match "hate" (list such spellings as terms of their own). Folding is
per character, which equals whole-string NFKD once marks are removed; NFKC is not needed.

**Matching.** A term is its words (runs of letters/digits); a phrase matches with *any* run of
separators between its words ("bad  word", "bad-word", "bad_word" all match "bad word").
Matches respect word boundaries judged on the normalized text: "ass" never matches inside
"class" or "assistant", nor inside "cl<U+200B>ass" (the zero-width space is removed first).
Terms whose edge is a CJK, kana, Thai, Lao, Khmer or Myanmar character — scripts written
without spaces — match without a boundary on that edge. Where two terms match at one place
the longest wins. Confusable folding is deliberately lossy: a Cyrillic word made only of
lookalike letters reads as its Latin twin.

**Spans** are offsets into the original text: normalization records where each normalized
character came from (one original character may become several, or nothing), so a finding
covers the obfuscated original, zero-width characters and combining marks included.

**Speed.** Text that is ASCII, or whose other characters each fold to one ASCII character
(curly quotes, accented letters, lookalikes: ``str.encode`` with a folding error handler),
keeps its offsets and is matched as bytes in which every separator is a space: one C split
tells whether any term's first word occurs at all — most scans end there — and only then does
a trie-shaped regular expression of those terms (compiled once, cached) find the spans. Other
text is normalized with an offset map and matched with one Unicode trie of all terms, its
boundary checks placed after the first character so that sre still skips ahead.

**Window.** A match can be longer in the original than in normalized form (inserted
invisibles, marks, long separator runs), so ``window`` is ``4 ×`` the longest normalized term
(at least 16). A stream match padded beyond that can be split across chunks and missed.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Sequence
from operator import itemgetter

from bedrock_gateway.filters.base import ACTIONS, Action, Finding

__all__ = ["DenyTermsFilter", "normalize"]

WINDOW_FACTOR = 4
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0")
_UNSPACED = ("CJK", "HIRAGANA", "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR", "IDEOGRAPHIC")
_CONFUSABLE_PAIRS = (
    "аa вb гr еe һh іi јj кk мm нh оo пn рp сc ѕs тt уy хx ьb ӏl ԁd ԛq ԝw "  # Cyrillic
    "αa βb γy εe ζz ηn ιi κk μu νv οo ρp τt υu χx ωw ϲc ϳj "  # Greek
    "ıi ȷj ɑa ɡg ɩi øo đd ħh łl ŧt ƀb օo սu ցg ոn"  # Latin, Armenian
)
_CONFUSABLES = str.maketrans({pair[0]: pair[1] for pair in _CONFUSABLE_PAIRS.split()})
_WORDS = re.compile(r"[^\W_]+")
# ASCII letters/digits lower-cased, every other byte a separator (space).
_BYTES_TABLE = bytes(
    ord(chr(b).lower()) if chr(b).isalnum() and b < 128 else 32 for b in range(256)
)
_RUNS = re.compile(rb"\?\?*")  # not \?+: sre only skips ahead to a literal first
# In trie keys: \0 separates words, \1 follows a first character that needs a word boundary
# before it, \2 ends a term that needs one after it.
_MARKS = {"\1": r"(?<![^\W_].)", "\2": r"(?![^\W_])"}
_Trie = dict[str, "_Trie"]
_first = itemgetter(0)


def _unspaced(c: str) -> bool:
    """A character of a script written without spaces between words."""
    return unicodedata.name(c, "").startswith(_UNSPACED)


def _fold(c: str) -> str:
    """The normalized form of one non-ASCII character ('' if it is invisible)."""
    s = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", c).casefold())
    kept = "".join(ch for ch in s if unicodedata.category(ch) not in ("Mn", "Me", "Cf")
                   and ch not in _FILLERS).translate(_CONFUSABLES)
    # lower(): casefold maps Cherokee to capitals
    return "".join(ch if ch.isalnum() else " " for ch in kept).lower()


class _Folds(dict[int, str]):
    """Code point -> normalized form, for ``str.translate``; filled as characters are seen."""

    def __missing__(self, code: int) -> str:
        folded = chr(code).lower() if code < 128 else _fold(chr(code))
        if len(self) < 65536:
            self[code] = folded
        return folded


class _UnevenTable(dict[int, "str | None"]):
    """Code point -> ``None`` (translate drops it) if it normalizes to exactly one character."""

    def __missing__(self, code: int) -> str | None:
        value = None if len(_FOLDS[code]) == 1 else "x"
        if len(self) < 65536:
            self[code] = value
        return value


_FOLDS, _UNEVEN = _Folds(), _UnevenTable()


class _Uneven(Exception):
    """A character that does not normalize to exactly one ASCII character."""


def _fold_errors(error: UnicodeError) -> tuple[str, int]:
    """``str.encode`` error handler: non-ASCII characters as their one-character ASCII form."""
    assert isinstance(error, UnicodeEncodeError)
    run = error.object[error.start:error.end]
    if run.translate(_UNEVEN) or not (folded := run.translate(_FOLDS)).isascii():
        raise _Uneven
    return folded, error.end


_ERRORS = "bedrock_gateway.filters.terms"
codecs.register_error(_ERRORS, _fold_errors)


def _cp1252_table() -> bytes:
    """Windows-1252 byte -> like _BYTES_TABLE for what its character normalizes to, or 0 if
    that is not exactly one ASCII character."""
    table = bytearray(256)
    for b in range(256):
        fold = _FOLDS[ord(bytes([b]).decode("cp1252", "replace"))]
        table[b] = _BYTES_TABLE[ord(fold)] if len(fold) == 1 and fold.isascii() else 0
    return bytes(table)


_CP1252_WORDS = _cp1252_table()


def _ascii_words(text: str) -> bytes | None:
    """``text`` as bytes of lower-case ASCII letters, digits and spaces (separators), if every
    character normalizes to exactly one ASCII character — offsets then stay as they are.
    Windows-1252 holds curly quotes, dashes and Western accented letters, so encoding to it
    folds them in C; other characters go through the error handler."""
    if text.isascii():
        return text.encode("ascii").translate(_BYTES_TABLE)
    try:
        words = text.encode("cp1252", _ERRORS).translate(_CP1252_WORDS)
    except _Uneven:
        return None
    return None if 0 in words else words
Segment = tuple[int, int, bool]  # (normalized offset, original offset, maps 1:1)


def normalize(text: str) -> tuple[str, list[Segment]]:
    """The normalized text and its segments: segment ``(n, o, identity)`` starts at
    ``normalized[n]``, which came from ``text[o]``; an identity segment maps character for
    character, any other is the expansion of the single character ``text[o]``."""
    parts: list[str] = []
    segments: list[Segment] = []
    n = pos = 0
    delta = None  # original minus normalized offset while in an identity segment

    def same(at: int) -> None:  # text[at:] maps 1:1 from normalized offset n
        nonlocal delta
        if delta != at - n:
            segments.append((n, at, True))
            delta = at - n

    # Only non-ASCII characters fold specially: they are the runs of "?" that encoding with
    # errors="replace" leaves in their place (one byte per character; real "?" fold to "?").
    for m in _RUNS.finditer(text.encode("ascii", "replace")):
        start, end = m.span()
        if start > pos:
            same(pos)
            parts.append(text[pos:start])
            n += start - pos
        run = text[start:end]
        if end - start > 4 and not run.translate(_UNEVEN):  # every character becomes one
            same(start)
            parts.append(run.translate(_FOLDS))
            n += end - start
        else:
            for i, c in enumerate(run, start):
                fold = _FOLDS[ord(c)]
                if len(fold) == 1:
                    same(i)
                elif fold:
                    segments.append((n, i, False))
                    delta = None
                parts.append(fold)
                n += len(fold)
        pos = end
    if pos < len(text):
        same(pos)
        parts.append(text[pos:])
    return "".join(parts).lower(), segments or [(0, 0, True)]


def _original(segments: list[Segment], p: int) -> int:
    """The original offset of normalized character ``p``."""
    n, o, identity = segments[bisect_right(segments, p, key=_first) - 1]
    return o + (p - n if identity else 0)


def _trie(terms: Sequence[str], sep: str) -> str:
    """One alternation shaped like a trie (words joined by ``\\0``), longest match first."""
    root: _Trie = {}
    for term in terms:
        node = root
        for ch in term:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: _Trie) -> str:
        alts = [_MARKS.get(ch, sep if ch == "\0" else re.escape(ch)) + emit(child)
                for ch, child in sorted(node.items()) if ch]
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")" if alts else ""
        return f"(?:{body})?" if "" in node and body else body

    return emit(root)


class DenyTermsFilter:
    """Reports listed words and phrases (see the module docs for how text is normalized)."""

    def __init__(self, terms: Sequence[str], *, action: Action = "block",
                 name: str = "deny_terms", category: str = "term") -> None:
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
        if isinstance(terms, str):
            terms = [terms]
        self.name, self.action, self.category = name, action, category
        keys: set[str] = set()
        for term in terms:
            words = _WORDS.findall(normalize(term)[0])
            if not words:
                raise ValueError(f"deny term {term!r} has no letters or digits")
            keys.add("\0".join(words))
        longest = max((len(k) for k in keys), default=0)
        self.window = max(16, WINDOW_FACTOR * longest) if keys else 0
        self._by_first: dict[bytes, list[str]] = {}  # ASCII terms by their first word
        for key in sorted(k for k in keys if k.isascii()):
            self._by_first.setdefault(key.split("\0")[0].encode(), []).append(key)
        self._first_words = frozenset(self._by_first)
        self._bytes_rx: dict[frozenset[bytes], re.Pattern[bytes]] = {}  # by first words present
        # Unicode text: one trie too, with the boundary checks placed after the first
        # character so that sre can still skip to the possible first characters.
        marked = [key[0] + ("" if _unspaced(key[0]) else "\1") + key[1:]
                  + ("" if _unspaced(key[-1]) else "\2") for key in keys]
        self._str_rx = re.compile(_trie(sorted(marked), "[\\W_]+")) if keys else None

    def _bytes_pattern(self, first_words: frozenset[bytes]) -> re.Pattern[bytes]:
        """One trie for the ASCII terms that start with these words (cached)."""
        if (rx := self._bytes_rx.get(first_words)) is None:
            keys = sorted(k for w in first_words for k in self._by_first[w])
            rx = re.compile((" (?:" + _trie(keys, " +") + ")(?= )").encode())
            if len(self._bytes_rx) >= 256:
                self._bytes_rx.clear()
            self._bytes_rx[first_words] = rx
        return rx

    def scan(self, text: str) -> list[Finding]:
        if self._str_rx is None or not text:
            return []
        segments: list[Segment] = [(0, 0, True)]
        words = _ascii_words(text)
        if words is None:
            norm, segments = normalize(text)
            if norm.isascii():
                words = norm.encode("ascii").translate(_BYTES_TABLE)
        if words is not None:
            tokens = words.split()
            if self._first_words.isdisjoint(tokens):
                return []  # no listed term starts with a word of the text: the usual case
            present = self._first_words.intersection(tokens)
            spans = [(m.start(), m.end() - 1)
                     for m in self._bytes_pattern(present).finditer(b" " + words + b" ")]
        else:
            spans = [m.span() for m in self._str_rx.finditer(norm)]
        findings = []
        for start, end in spans:
            o_start, o_end = _original(segments, start), _original(segments, end - 1) + 1
            while o_end < len(text) and unicodedata.category(text[o_end]) in ("Mn", "Me"):
                o_end += 1  # trailing combining marks belong to the last letter
            findings.append(Finding(self.name, self.category, o_start, o_end, self.action))
        return findings
