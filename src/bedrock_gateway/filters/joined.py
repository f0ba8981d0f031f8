"""Judging a request's texts the way the model reads them: joined, across blocks and roles.

A model reads the system prompt, the blocks of a message and the messages of a conversation as
one text, so an address or a phrase split across two of them (``"jane@exa"`` + ``"mple.com"``,
``"project"`` + ``"falcon"``) must be found as if it were whole. What separates two texts when
the model reads them depends on the model's prompt template, so :func:`scan_joined` scans the
texts (in reading order, ``filters/text.py``) in three readings and keeps what any of them
finds. Texts marked not ``joined`` (names, titles, JSON keys and values: JSON syntax or a field
of their own sets them apart) take part in the spaced reading only:

- **spaced**: all texts joined with a space between them (none where one side already ends
  or starts with whitespace), scanned whole — every match inside one text, and matches whose
  words are split at a boundary ("project" | "falcon");
- **glued**: runs of joined texts with nothing between them — as the stream scanner joins
  frames — scanned around the boundaries only (``window`` characters on each side: the
  longest match a filter can make), for matches cut anywhere, across any number of texts
  ("jane" | "@exam" | "ple.com");
- **pairs**: each two neighbouring texts glued to each other but to nothing else, for a match
  cut in two whose outer edge touches a third text ("call" | "4111 11" | "11 1111 1111": glued
  whole, the card would be glued to "call").

Gluing changes nothing where a boundary has whitespace on either side, so only boundaries
without (*tight*) are read glued, and a pair only where a neighbour would glue a word
character onto its outer edge: a conversation whose texts end with punctuation or a newline
costs about one extra scan of the text near its boundaries.

A match of the paired or glued reading counts only if it crosses a boundary and adds to what
the narrower readings found (spaced, then paired) — but not past the end of a narrower match
into another text: an address at the end of one text would otherwise grow into the next
(``…@example.com.`` + ``Thanks`` reads ``…@example.com.Thanks``). Growing leftwards counts:
that is the start of a value cut off (``jane.d`` + ``oe@example.com``).

A match grown leftwards replaces the narrower one (one finding per value). Each
:class:`Located` finding says which parts of which texts it covers; :func:`redact_texts`
replaces each part with the placeholder, so a redaction of a match that spans two blocks
redacts the part in each (and leaves neither block empty). A single text is scanned as is.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bedrock_gateway.filters.base import Finding, TextFilter, redact

__all__ = ["Located", "redact_texts", "scan_joined"]

Part = tuple[int, int, int]  # (index of the text, start, end) within that text
_Parts = tuple[Part, ...]
_Reading = tuple[str, Callable[[int, int], _Parts]]  # a text, and its span -> parts map
_ISLANDS = "\n\n"  # between paired texts: no built-in match crosses it (others are dropped)


@dataclass(frozen=True, slots=True)
class Located:
    finding: Finding  # offsets in the reading it was found in
    parts: _Parts


def _parts(starts: Sequence[int], lengths: Sequence[int], start: int, end: int) -> _Parts:
    """The pieces of ``[start, end)`` of a joined text that lie in each text."""
    out = []
    i = max(0, bisect_right(starts, start) - 1)
    while i < len(starts) and starts[i] < end:
        lo, hi = max(start, starts[i]) - starts[i], min(end, starts[i] + lengths[i]) - starts[i]
        if hi > lo:
            out.append((i, lo, hi))
        i += 1
    return tuple(out)


def _offsets(lengths: Sequence[int], gap: int) -> list[int]:
    starts = [0]
    for n in lengths[:-1]:
        starts.append(starts[-1] + n + gap)
    return starts


_WORDY = frozenset("_.+-/@%")  # with letters and digits: what glues onto a match's edge


def _wordy(c: str) -> bool:
    return c.isalnum() or c in _WORDY


class _Texts:
    """The texts, where each starts in the glued reading, and which boundaries glue.

    A boundary with whitespace on either side reads the same glued as spaced, so the spaced
    reading adds no space there and only *tight* boundaries (no whitespace at either side) are
    read glued. A pair is read only if a neighbour glues a word character onto its edge."""

    def __init__(self, texts: Sequence[str], joined: Sequence[bool]) -> None:
        self.texts = texts
        self.lengths = [len(t) for t in texts]
        self.offsets = _offsets(self.lengths, 0)
        n = len(texts)
        glue = [joined[i] and joined[i + 1] for i in range(n - 1)]
        tight = [bool(texts[i]) and bool(texts[i + 1]) and not texts[i][-1].isspace()
                 and not texts[i + 1][0].isspace() for i in range(n - 1)]
        # spaced reading: a space between two texts unless one side already is whitespace
        self.gaps = [0 if (texts[i][-1:].isspace() or texts[i + 1][:1].isspace()) else 1
                     for i in range(n - 1)]
        self.glued_text = glued = "".join(texts)
        self.bounds = sorted({self.offsets[i + 1] for i in range(n - 1) if glue[i]})
        self.tight = [b for b in self.bounds if 0 < b < len(glued)  # empty texts skipped
                      and not glued[b - 1].isspace() and not glued[b].isspace()]

        def edge(i: int, left: bool) -> bool:  # text i glued to a word character at that side
            j = i - 1 if left else i + 1
            if not (0 <= j < n and glue[min(i, j)] and tight[min(i, j)]):
                return False
            return _wordy(texts[j][-1 if left else 0]) and _wordy(texts[i][0 if left else -1])

        self.pairs_at = [i for i in range(n - 1) if glue[i] and tight[i]
                         and (edge(i, left=True) or edge(i + 1, left=False))]
        self.run = [0] * n  # runs of joined texts: a glued match stays in one
        for i in range(1, n):
            self.run[i] = self.run[i - 1] + (0 if glue[i - 1] else 1)

    def parts(self, start: int, end: int) -> _Parts:
        """Parts of a glued match, or ``()`` if it crosses no glued boundary or leaves a run."""
        i = bisect_right(self.bounds, start)
        if not (i < len(self.bounds) and self.bounds[i] < end):
            return ()
        parts = _parts(self.offsets, self.lengths, start, end)
        return parts if self.run[parts[0][0]] == self.run[parts[-1][0]] else ()

    def span(self, parts: _Parts) -> tuple[int, int]:
        """Where ``parts`` (contiguous) lie in the glued text."""
        (first, start, _), (last, _, end) = parts[0], parts[-1]
        return self.offsets[first] + start, self.offsets[last] + end

    def glued(self, reach: int) -> list[_Reading]:
        """The glued text around each glued boundary (merged regions)."""
        glued = self.glued_text
        regions: list[list[int]] = []
        for b in self.tight:
            lo, hi = max(0, b - reach), min(len(glued), b + reach)
            if regions and lo <= regions[-1][1]:
                regions[-1][1] = hi
            else:
                regions.append([lo, hi])
        return [(glued[lo:hi], self._shifted(lo)) for lo, hi in regions]

    def _shifted(self, lo: int) -> Callable[[int, int], _Parts]:
        return lambda s, e: self.parts(s + lo, e + lo)

    def pairs(self, reach: int) -> list[_Reading]:
        """Every two glued neighbours (their facing ``reach`` characters), the pairs apart."""
        islands: list[str] = []
        meta: list[tuple[int, int, int, int]] = []  # (island start, boundary, text, tail start)
        at = 0
        for i in self.pairs_at:
            tail, head = self.texts[i][-reach:], self.texts[i + 1][:reach]
            meta.append((at, at + len(tail), i, self.lengths[i] - len(tail)))
            islands.append(tail + head)
            at += len(tail) + len(head) + len(_ISLANDS)
        starts = [m[0] for m in meta]

        def parts(s: int, e: int) -> _Parts:
            k = bisect_right(starts, s) - 1
            start, boundary, i, offset = meta[k]
            if not s < boundary < e <= start + len(islands[k]):  # no boundary, or two islands
                return ()
            return (i, offset + s - start, self.lengths[i]), (i + 1, 0, e - boundary)

        return [(_ISLANDS.join(islands), parts)] if islands else []


def _grown(span: tuple[int, int], narrow: Sequence[tuple[int, int]], bounds: Sequence[int]
           ) -> tuple[int, int]:
    """A wider reading's match, less what it adds past the end of a narrower reading's match
    into another text (``…@example.com.`` + ``Thanks`` glued reads ``…@example.com.Thanks``);
    empty if nothing new is left. Growing leftwards is kept: the start of a value cut off
    (``jane.d`` + ``oe@example.com``)."""
    start, end = span
    for s, e in narrow:
        if not (start < e and s < end) or end <= e:
            continue  # apart, or not longer at the end
        i = bisect_left(bounds, e)  # the first boundary at or after the narrower match's end
        if i < len(bounds) and bounds[i] < end:
            end = e
    if any(s <= start and end <= e for s, e in narrow):
        return start, start
    return start, end


def scan_joined(texts: Sequence[str], filters: Sequence[TextFilter],
                joined: Sequence[bool] | None = None) -> list[Located]:
    """Every finding of ``filters`` in ``texts`` read as one text (see the module docs);
    ``joined[i]``: whether ``texts[i]`` is running text (default: all are)."""
    if not texts:
        return []
    if len(texts) == 1:
        return [Located(f, ((0, f.start, f.end),)) for flt in filters for f in flt.scan(texts[0])]
    t = _Texts(texts, [True] * len(texts) if joined is None else joined)
    starts = [0]
    for n, gap in zip(t.lengths, t.gaps, strict=False):
        starts.append(starts[-1] + n + gap)
    spaced = "".join(text + " " * gap for text, gap in zip(texts, [*t.gaps, 0], strict=True))
    found: list[tuple[Located, tuple[int, int]] | None] = []
    seen: set[tuple[str, str, _Parts]] = set()

    def keep(f: Finding, parts: _Parts, span: tuple[int, int]) -> None:
        key = (f.label, f.action, parts)
        if key in seen:
            return
        seen.add(key)
        for k, entry in enumerate(found):  # a match grown leftwards replaces the narrower one
            if entry and entry[0].finding.label == f.label and span[0] <= entry[1][0] \
                    and entry[1][1] <= span[1]:
                found[k] = None
        found.append((Located(f, parts), span))

    for flt in filters:
        narrow: dict[str, list[tuple[int, int]]] = {}  # label -> glued spans found so far
        for f in flt.scan(spaced):
            parts = _parts(starts, t.lengths, f.start, f.end)
            if parts:
                narrow.setdefault(f.label, []).append(t.span(parts))
                keep(f, parts, t.span(parts))
        reach = getattr(flt, "window", 0) + 2  # a match and a character of context either side
        if reach <= 2 or not t.tight:
            continue
        for readings in (t.pairs(reach), t.glued(reach)):
            new: list[tuple[Finding, tuple[int, int]]] = []
            for text, to_parts in readings:
                for f in flt.scan(text):
                    parts = to_parts(f.start, f.end)
                    if parts:
                        span = _grown(t.span(parts), narrow.get(f.label, ()), t.bounds)
                        if span[0] < span[1]:
                            new.append((f, span))
            for f, span in new:
                narrow.setdefault(f.label, []).append(span)
                keep(f, _parts(t.offsets, t.lengths, *span), span)
    return [entry[0] for entry in found if entry]


def redact_texts(texts: Sequence[str], located: Sequence[Located]) -> dict[int, str]:
    """The texts that ``redact`` findings change, by index, with each part replaced by its
    placeholder (overlapping parts merged, as :func:`~bedrock_gateway.filters.base.redact`)."""
    parts: dict[int, list[Finding]] = {}
    for loc in located:
        f = loc.finding
        if f.action == "redact":
            for i, start, end in loc.parts:
                parts.setdefault(i, []).append(Finding(f.filter, f.category, start, end, "redact"))
    return {i: redact(texts[i], found) for i, found in parts.items()}
