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
"class" or "assistant", nor inside "cl\u200bass" (the zero-width space is removed first).
Terms whose edge is a CJK, kana, Thai, Lao, Khmer or Myanmar character — scripts written
without spaces — match without a boundary on that edge. Where two terms match at one place
the longest wins. Confusable folding is deliberately lossy: a Cyrillic word made only of
lookalike letters reads as its Latin twin.

**Spans** are offsets into the original text: normalization records where each normalized
character came from (one original character may become several, or nothing), so a finding
covers the obfuscated original, zero-width characters and combining marks included.

**Speed.** All terms compile into one trie-shaped regular expression. Text that is ASCII, or
that normalizes to ASCII, is matched as bytes in which every separator is a space; other text
uses the Unicode pattern.

**Window.** A match can be longer in the original than in normalized form (inserted
invisibles, marks, long separator runs), so ``window`` is ``4 ×`` the longest normalized term
(at least 16). A stream match padded beyond that can be split across chunks and missed.
"""

from __future__ import annotations

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
_CACHE: dict[str, str] = {}
_Trie = dict[str, "_Trie"]
_first = itemgetter(0)


def _fold(c: str) -> str:
    """The normalized form of one non-ASCII character ('' if it is invisible)."""
    folded = _CACHE.get(c)
    if folded is None:
        s = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", c).casefold())
        kept = (ch for ch in s if unicodedata.category(ch) not in ("Mn", "Me", "Cf")
                and ch not in _FILLERS)
        folded = "".join(ch if ch.isalnum() else " " for ch in "".join(kept).translate(
            _CONFUSABLES)).lower()  # lower(): casefold maps Cherokee to capitals
        if len(_CACHE) < 65536:
            _CACHE[c] = folded
    return folded


Segment = tuple[int, int, bool]  # (normalized offset, original offset, maps 1:1)


def normalize(text: str) -> tuple[str, list[Segment]]:
    """The normalized text and its segments: segment ``(n, o, identity)`` starts at
    ``normalized[n]``, which came from ``text[o]``; an identity segment maps character for
    character, any other is the expansion of the single character ``text[o]``."""
    parts: list[str] = []
    segments: list[Segment] = []
    n = pos = 0
    delta = None  # original minus normalized offset while in an identity segment
    # Non-ASCII characters are the only ones that fold specially: find them as the "?" that
    # encoding with errors="replace" leaves in their place (one byte per character).
    raw = text.encode("ascii", "replace")
    i = -1
    while (i := raw.find(b"?", i + 1)) >= 0:
        c = text[i]
        if c == "?":
            continue
        fold = _CACHE.get(c) or _fold(c)
        if i > pos:
            if delta != pos - n:
                segments.append((n, pos, True))
                delta = pos - n
            parts.append(text[pos:i])
            n += i - pos
        if len(fold) == 1:
            if delta != i - n:
                segments.append((n, i, True))
                delta = i - n
        elif fold:
            segments.append((n, i, False))
            delta = None
        parts.append(fold)
        n += len(fold)
        pos = i + 1
    if pos < len(text):
        if delta != pos - n:
            segments.append((n, pos, True))
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
        alts = [(sep if ch == "\0" else re.escape(ch)) + emit(child)
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
        self._bytes_rx: dict[frozenset[bytes], re.Pattern[bytes]] = {}  # by first words present
        alts = []
        for key in sorted(keys, key=len, reverse=True):
            body = "[\\W_]+".join(re.escape(w) for w in key.split("\0"))
            head = "" if unicodedata.name(key[0], "").startswith(_UNSPACED) else r"(?<![^\W_])"
            tail = "" if unicodedata.name(key[-1], "").startswith(_UNSPACED) else r"(?![^\W_])"
            alts.append(head + body + tail)
        self._str_rx = re.compile("|".join(alts)) if alts else None

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
        norm, segments = (text, [(0, 0, True)]) if text.isascii() else normalize(text)
        if norm.isascii():
            words = norm.encode("ascii").translate(_BYTES_TABLE)
            if not (present := self._by_first.keys() & words.split()):
                return []  # no listed term starts with a word of the text: the usual case
            spans = [(m.start(), m.end() - 1)
                     for m in self._bytes_pattern(frozenset(present)).finditer(b" " + words + b" ")]
        else:
            spans = [m.span() for m in self._str_rx.finditer(norm)]
        findings = []
        for start, end in spans:
            o_start, o_end = _original(segments, start), _original(segments, end - 1) + 1
            while o_end < len(text) and unicodedata.category(text[o_end]) in ("Mn", "Me"):
                o_end += 1  # trailing combining marks belong to the last letter
            findings.append(Finding(self.name, self.category, o_start, o_end, self.action))
        return findings
