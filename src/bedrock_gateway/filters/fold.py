# ruff: noqa: RUF002, RUF003  (lookalike characters are this module's subject)
"""Unicode folding for the PII filter: the text as a model reads it, with a map back.

:func:`fold` turns every character a reader (or a model) would read as an ASCII one into it,
character by character, and says where each folded character came from:

- **removed**: format and invisible characters (category ``Cf``: zero-width space and joiners,
  word joiner, soft hyphen, BOM, bidi controls, tag characters), combining marks (``Mn``,
  ``Me``: "é" written as "e" + U+0301, variation selectors) and Hangul fillers;
- **spaces** (``Zs``, ``Zl``, ``Zp``: NBSP, narrow NBSP, figure, thin, ideographic spaces)
  → ``" "``;
- **dashes** (``Pd``: en and em dashes, hyphen, non-breaking hyphen, fullwidth ``－``; minus
  sign U+2212) → ``"-"``; ideographic full stops (``。``, ``｡``, which IDNA reads as dots)
  → ``"."``;
- **digits** of every script (``Nd``: fullwidth ``４``, Arabic-Indic ``٤``, Devanagari ``४`` …)
  → ASCII digits;
- everything else: its NFKC form (fullwidth ``＠``/``ｂｏｂ``/``．``/``／`` → ``@``/``bob``/``.``/
  ``/``, ligatures, circled and mathematical letters and digits), marks dropped. Other letters
  (``ä``, ``д``, ``例``) stay what they are: an address may be internationalised.

Case is kept (keys and IBANs are case-sensitive). ASCII text is returned as it is at the cost of
one ``str.isascii``. Otherwise one regular expression finds the characters outside a class
known to stay as they are (letters of common scripts, CJK, curly quotes); those are looked up
in a cached table. Invisible characters are removed and runs that fold one to one replaced in
C; only texts with expansions (ligatures, ``…``, circled numbers) are folded one by one.

Offsets: :func:`original` maps a folded offset back. Segments are ``(folded, original,
identity)``: from ``folded[n]`` on, characters map one to one from ``text[o]`` (``identity``) or
are the expansion of the single character ``text[o]``. A span of folded text maps back to the
original span that covers it, removed characters inside included.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from operator import itemgetter

__all__ = ["Segment", "fold", "original", "span"]

Segment = tuple[int, int, bool]  # (folded offset, original offset, maps 1:1)
_IDENTITY: list[Segment] = [(0, 0, True)]
_REMOVED = frozenset({"Cf", "Mn", "Me"})
_SPACES = frozenset({"Zs", "Zl", "Zp"})
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0")
_DOTS = frozenset("\u3002\uff61")  # IDNA label separators other than "." and "．"
_first = itemgetter(0)


def _one(c: str) -> str:
    """The fold of one character that NFKC has already normalised."""
    category = unicodedata.category(c)
    if category in _REMOVED or c in _FILLERS:
        return ""
    if category in _SPACES:
        return " "
    if category == "Pd" or c == "\u2212":
        return "-"
    if category == "Nd":
        return str(unicodedata.decimal(c))
    return "." if c in _DOTS else c


def fold_char(c: str) -> str:
    """The folded form of one character ('' when it is invisible)."""
    first = _one(c)
    if first != c or c.isascii():
        return first
    return "".join(_one(ch) for ch in unicodedata.normalize("NFKC", c))


class _Folds(dict[int, str]):
    """Code point -> folded form, for ``str.translate``; filled as characters are seen."""

    def __missing__(self, code: int) -> str:
        folded = fold_char(chr(code))
        if len(self) < 65536:
            self[code] = folded
        return folded


_FOLDS = _Folds()


# Characters known to fold to themselves (checked by the tests): letters of common scripts,
# curly quotes, CJK punctuation. One C scan finds the others, so text made of these and ASCII
# costs no per-character Python work.
_STABLE = (
    "\x00-\x7f\u00c0-\u00ff\u0100-\u0131\u0134-\u013e\u0141-\u0148\u014a-\u017e\u0180-\u01c3"
    "\u01cd-\u01f0\u01f4-\u024f\u0370-\u0373\u0375-\u0379\u037b-\u037d\u037f-\u0383\u0386"
    "\u0388-\u03cf\u03d7-\u03ef\u03f3\u03f6-\u03f8\u03fa-\u03ff\u0400-\u0482\u048a-\u04ff"
    "\u05d0-\u05ea\u0620-\u064a\u0903-\u0939\u093b\u093d-\u0940\u0949-\u094c\u094e-\u0950"
    "\u0960-\u0961\u0964-\u0965\u0970-\u097f\u0e00-\u0e30\u0e32\u0e3b-\u0e46\u0e4f\u0e5a-\u0e5b"
    "\u2018-\u201f\u2022\u3001\u3008-\u3011\u3041-\u3098\u309d-\u309e\u30a1-\u30fe\u4e00-\u9fff"
    "\uac00-\ud7a3"
)
_STABLE_RUNS = re.compile(f"[{_STABLE}]+")
_Plan = tuple[re.Pattern[str], re.Pattern[str] | None, bool]
_PLANS: dict[str, _Plan] = {}


def _plan(chars: str) -> _Plan:
    """For the distinct characters that fold: a pattern of runs of those that fold to one, a
    pattern of those that fold to nothing, and whether any folds to several (cached)."""
    plan = _PLANS.get(chars)
    if plan is None:
        one = "".join(c for c in chars if len(_FOLDS[ord(c)]) == 1)
        gone = "".join(c for c in chars if not _FOLDS[ord(c)])
        plan = (re.compile(f"[{re.escape(one)}]+" if one else "(?!)"),
                re.compile(f"[{re.escape(gone)}]") if gone else None,
                len(one) + len(gone) < len(chars))
        if len(_PLANS) >= 256:
            _PLANS.clear()
        _PLANS[chars] = plan
    return plan


def fold(text: str) -> tuple[str, list[Segment]]:
    """The folded text and its segments (see the module docs)."""
    if text.isascii():
        return text, _IDENTITY
    others = _STABLE_RUNS.sub("", text)
    chars = "".join(sorted(c for c in set(others) if _FOLDS[ord(c)] != c))
    if not chars:  # letters that stay what they are: nothing to do
        return text, _IDENTITY
    runs, gone, several = _plan(chars)
    if several:
        return _fold_slowly(text, chars)
    segments = _IDENTITY
    if gone is not None:  # invisible characters: removed, each starting a new segment
        at = [m.start() for m in gone.finditer(text)]
        segments = [(0, 0, True), *[(p - k, p + 1, True) for k, p in enumerate(at)]]
        text = gone.sub("", text)
    if len(others) * 8 > len(text):  # dense (all fullwidth, say): one pass in C
        return text.translate(_FOLDS), segments
    return runs.sub(_fold_run, text), segments


def _fold_run(m: re.Match[str]) -> str:
    return m.group().translate(_FOLDS)


def _fold_slowly(text: str, chars: str) -> tuple[str, list[Segment]]:
    """Folding with expansions (ligatures, ellipses, circled numbers): one by one."""
    parts: list[str] = []
    segments: list[Segment] = []
    n = pos = 0
    delta: int | None = None  # original minus folded offset while in an identity segment
    for m in re.finditer(f"[{re.escape(chars)}]", text):
        i = m.start()
        folded = _FOLDS[ord(text[i])]
        if len(folded) == 1:
            continue  # one to one: folded with the run it is in
        if i > pos:
            if delta != pos - n:
                segments.append((n, pos, True))
                delta = pos - n
            parts.append(text[pos:i].translate(_FOLDS))
            n += i - pos
        if folded:  # an expansion of text[i]
            segments.append((n, i, False))
            delta = None
            parts.append(folded)
            n += len(folded)
        pos = i + 1
    if pos < len(text):
        if delta != pos - n:
            segments.append((n, pos, True))
        parts.append(text[pos:].translate(_FOLDS))
    return "".join(parts), segments or _IDENTITY


def original(segments: list[Segment], p: int) -> int:
    """The original offset of folded character ``p``."""
    n, o, identity = segments[bisect_right(segments, p, key=_first) - 1]
    return o + (p - n if identity else 0)


def span(segments: list[Segment], start: int, end: int) -> tuple[int, int]:
    """The original span of folded ``[start, end)`` (``end > start``)."""
    if segments is _IDENTITY:
        return start, end
    return original(segments, start), original(segments, end - 1) + 1
