"""User regular expressions, checked at construction so that none can stall the gateway.

:class:`RegexFilter` reports matches of its patterns::

    RegexFilter({"ticket": r"\\bOPS-\\d{3,6}\\b"}, action="log").scan("see OPS-1234")

A mapping names each pattern's category; a sequence gets ``pattern`` (one pattern) or
``pattern_0``, ``pattern_1`` … (several). Patterns use :mod:`re` syntax, inline flags included
(``(?i)secret``). Each pattern runs on its own: overlapping matches of two are both reported.

**Guard.** Python's backtracking engine can take exponential time on some patterns, so every
pattern is parsed (with the standard library's own parser) and :class:`ValueError` raised when:

* it is longer than :data:`MAX_PATTERN_LENGTH`, does not compile, or can match empty text;
* it uses a backreference (``\\1``, ``(?P=name)``) or a conditional group (``(?(1)a|b)``);
* it nests quantifiers: a repeated part (``+``, ``*``, ``{m,n}`` with *n* > 1) holds an
  unbounded quantifier (``(a+)+``, ``(a*)*``, ``(\\d+){3}``), or an unboundedly repeated part
  holds any variable one (``(a?)+``, ``(a{1,3})*``). Bounded nesting passes while the ways to
  split a match stay ≤ :data:`MAX_AMBIGUITY` (``(?:\\d{1,3}\\.){3}``: 3³). A quantifier that
  cannot backtrack — possessive (``a++``, ``\\w{1,63}+``) or in an atomic group
  (``(?>a+)``) — does not count: write ``(?:[a-z]{1,63}+\\.)+``, not ``(?:[a-z]{1,63}\\.)+``;
* a repeated part holds an alternation with two branches that no character position tells
  apart — one empty or a prefix of the other (``(a|aa)+``, ``(x|)+``, ``(ab|a)*``). Branches are
  compared up to their first quantifier or group; ``\\w``-style categories and negated classes
  overlap everything (``(?:foo|bar)+`` passes, ``(?:\\d|1x)+`` does not).

What passes is at worst polynomial (``a.*b`` on a long run of ``a``). To bound that, text is
scanned in pieces of :data:`PIECE` characters overlapping by ``window + 64``; a match is taken
from the piece it starts in and no attempt reads past its piece: O(n * PIECE), not O(n²).

**Speed.** A pattern is skipped when its longest required literal (``OPS-`` above) is not in
the text: one C substring search. Otherwise sre jumps to a literal prefix or first-character
class, but not past a leading ``\\b`` or into a leading quantifier, so those are searched as
``OPS-\\d{3,6}\\b`` / ``[A-Z][A-Z]{1,4}…`` and each candidate confirmed with the pattern as
written. A pattern starting with ``.`` or a lookaround tries every position (~10 ns each).

**Window.** ``window`` is the longest match of any pattern as the parser computes it; an
unbounded pattern (or one bounded above ``max_window``) counts as ``max_window``, and its
matches longer than that may be cut at a piece boundary or split across stream chunks.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bedrock_gateway.filters.base import ACTIONS, Action, Finding

__all__ = ["MAX_AMBIGUITY", "MAX_PATTERN_LENGTH", "PIECE", "RegexFilter"]

MAX_PATTERN_LENGTH = 1000
MAX_AMBIGUITY = 1024
PIECE = 4096


def _load_parser() -> Any:
    """The standard library's private regex parser (``re._parser``, ``sre_parse`` before 3.11)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for module in ("re._parser", "sre_parse"):
            with contextlib.suppress(ImportError):
                return importlib.import_module(module)
    return None  # pragma: no cover - a Python that moved it again: see _rule


_P = _load_parser()
_OP = {name: getattr(_P, name, object()) for name in (
    "LITERAL", "IN", "RANGE", "AT", "ASSERT", "ASSERT_NOT", "SUBPATTERN", "BRANCH",
    "MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT", "ATOMIC_GROUP", "GROUPREF",
    "GROUPREF_EXISTS", "MAXREPEAT")}
_REPEATS = (_OP["MAX_REPEAT"], _OP["MIN_REPEAT"], _OP["POSSESSIVE_REPEAT"])
_ZERO_WIDTH = (_OP["AT"], _OP["ASSERT"], _OP["ASSERT_NOT"])
_NO_BACKTRACKING = (_OP["POSSESSIVE_REPEAT"], _OP["ATOMIC_GROUP"])
_LEAD = re.compile(r"(?P<flags>\(\?[aimsu]+\))?(?P<b>\\b)?")
_LEAD_REPEAT = re.compile(r"(?P<atom>\[\^?(?:\\.|[^\]\\])+\]|\\[dwsDWS]|\\[^A-Za-z0-9]|[A-Za-z0-9])"
                          r"(?:(?P<plus>\+)|\{(?P<lo>\d+)(?P<comma>,(?P<hi>\d*))?\})(?P<mode>[?+]?)")
_Ranges = list[tuple[int, int]] | None  # first characters a part can start with; None: any


def _scoped(icase: bool, subpattern: Any) -> bool:
    """Whether case is ignored inside a group, given its ``(?i:...)`` / ``(?-i:...)`` flags."""
    return (icase or bool(subpattern[1] & re.IGNORECASE)) and not subpattern[2] & re.IGNORECASE


def _children(op: Any, av: Any) -> list[Any]:
    if op is _OP["BRANCH"]:
        return list(av[1])
    if op in _REPEATS:
        return [av[2]]
    if op in (_OP["SUBPATTERN"], _OP["ASSERT"], _OP["ASSERT_NOT"]):
        return [av[-1]]
    return [av] if op is _OP["ATOMIC_GROUP"] else []


def _variable_repeats(sub: Any) -> Iterator[tuple[int, int]]:
    """``(min, max)`` of each quantifier inside ``sub`` that can backtrack and vary in width."""
    for op, av in sub:
        if op in _NO_BACKTRACKING:
            continue
        if op in _REPEATS and av[0] != av[1]:
            yield av[0], av[1]
        for child in _children(op, av):
            yield from _variable_repeats(child)


def _prefix(sub: Any, icase: bool) -> tuple[list[_Ranges], bool]:
    """What each of the first characters of ``sub`` can be, up to the first part that is not
    a single character (a quantifier, an alternation, ...); and whether that was all of it."""
    out: list[_Ranges] = []
    for op, av in sub:
        if op is _OP["LITERAL"]:
            chars = {av, ord(chr(av).lower()), ord(chr(av).upper())} if icase else {av}
            out.append([(c, c) for c in chars])
        elif op is _OP["IN"]:
            simple = not icase and all(iop in (_OP["LITERAL"], _OP["RANGE"]) for iop, _ in av)
            out.append([(v, v) if isinstance(v, int) else v for _, v in av] if simple else None)
        elif op is _OP["SUBPATTERN"]:
            inner, complete = _prefix(av[-1], _scoped(icase, av))
            out += inner
            if not complete:
                return out, False
        elif op in _ZERO_WIDTH:
            continue
        elif _children(op, av):
            return out, False
        else:
            out.append(None)  # ANY, NOT_LITERAL, CATEGORY: any character
    return out, True


def _ambiguous_branches(sub: Any, icase: bool) -> Iterator[int]:
    """Branch counts of the alternations in ``sub`` where one branch's text can be a prefix of
    another's (one can be empty, or they cannot be told apart by a character class)."""
    for op, av in sub:
        if op in _NO_BACKTRACKING:
            continue
        if op is _OP["BRANCH"]:
            prefixes = [_prefix(alt, icase)[0] for alt in av[1]]
            if any(not any(a is not None and b is not None and not any(
                    x0 <= y1 and y0 <= x1 for x0, x1 in a for y0, y1 in b)
                    for a, b in zip(p, q, strict=False))
                   for i, p in enumerate(prefixes) for q in prefixes[i + 1:]):
                yield len(prefixes)
        for child in _children(op, av):
            yield from _ambiguous_branches(
                child, _scoped(icase, av) if op is _OP["SUBPATTERN"] else icase)


def _guard(sub: Any, icase: bool) -> None:
    for op, av in sub:
        if op in (_OP["GROUPREF"], _OP["GROUPREF_EXISTS"]):
            raise ValueError("backreferences and conditional groups are not allowed")
        if op in _REPEATS and av[1] > 1:
            inner = list(_variable_repeats(av[2]))
            branches = list(_ambiguous_branches(av[2], icase))
            unbounded = av[1] == _OP["MAXREPEAT"] or any(
                hi == _OP["MAXREPEAT"] for _, hi in inner)
            variants = math.prod(hi - lo + 1 for lo, hi in inner) * math.prod(branches)
            if (inner or branches) and (unbounded or variants > MAX_AMBIGUITY ** (1 / av[1])):
                what = "an ambiguous alternation" if branches else "a quantifier"
                raise ValueError(f"a repeated part holds {what} (like (a+)+ or (a|aa)+), which "
                                 "can take exponential time; make the inner quantifier possessive"
                                 " (a++) or atomic ((?>...)), or remove the nesting")
        for child in _children(op, av):
            _guard(child, _scoped(icase, av) if op is _OP["SUBPATTERN"] else icase)


def _required_literal(sub: Any, icase: bool) -> tuple[str, bool]:
    """The longest literal every match contains, and whether it matches ignoring case."""
    best, run = ("", False), ""
    for op, av in sub:
        if op is _OP["LITERAL"]:
            run += chr(av)
            continue
        if op in _ZERO_WIDTH:
            continue  # the literals on both sides are adjacent
        best, run = max(best, (run, icase), key=lambda c: len(c[0])), ""
        inner = None
        if op is _OP["SUBPATTERN"]:
            inner = _required_literal(av[-1], _scoped(icase, av))
        elif (op in _REPEATS and av[0] >= 1) or op is _OP["ATOMIC_GROUP"]:
            inner = _required_literal(_children(op, av)[0], icase)
        if inner:
            best = max(best, inner, key=lambda c: len(c[0]))
    return max(best, (run, icase), key=lambda c: len(c[0]))


@dataclass(frozen=True, slots=True)
class _Rule:
    category: str
    rx: re.Pattern[str]
    scout: re.Pattern[str] | None  # finds candidates faster; rx confirms them
    literal: str  # every match contains it ('' if none is known)
    icase: bool  # ... ignoring case
    window: int


def _rule(category: str, pattern: str, max_window: int) -> _Rule:
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(f"longer than {MAX_PATTERN_LENGTH} characters")
    rx = re.compile(pattern)
    if _P is None:  # pragma: no cover - no parser: refuse what looks like nesting
        if re.search(r"\\[1-9]|\(\?P=|\(\?\(|\)[*+{]", pattern):
            raise ValueError("groups with quantifiers and backreferences are not allowed")
        return _Rule(category, rx, None, "", False, max_window)
    parsed = _P.parse(pattern)
    icase = bool(parsed.state.flags & re.IGNORECASE)
    _guard(parsed, icase)
    lo, hi = parsed.getwidth()
    if lo == 0:  # also what makes every match non-empty, which scan relies on
        raise ValueError("it can match the empty string")
    return _Rule(category, rx, _scout(pattern, parsed), *_required_literal(parsed, icase),
                 min(hi, max_window))


def _scout(pattern: str, parsed: Any) -> re.Pattern[str] | None:
    """``pattern`` without a leading ``\\b`` and with a leading ``X{m,n}`` spelled
    ``XX{m-1,n-1}``: it matches wherever ``pattern`` does, and sre searches it faster."""
    lead = _LEAD.match(pattern)
    if lead is None or (lead["b"] and parsed.data[0][0] is not _OP["AT"]):
        return None
    body = pattern[lead.end():]
    if (rep := _LEAD_REPEAT.match(body)) and (rep["plus"] or int(rep["lo"]) >= 1):
        lo, hi = int(rep["lo"] or 1) - 1, rep["hi"]
        count = ("*" if rep["plus"] else f"{{{lo}}}" if not rep["comma"]
                 else f"{{{lo},{int(hi) - 1 if hi else ''}}}")
        body = rep["atom"] * 2 + count + rep["mode"] + body[rep.end():]
    elif not lead["b"]:
        return None
    source = (lead["flags"] or "") + body
    with contextlib.suppress(re.error):  # the rewrites keep the width: check, to be safe
        return re.compile(source) if _P.parse(source).getwidth() == parsed.getwidth() else None
    return None  # pragma: no cover


class RegexFilter:
    """Reports matches of user patterns (see the module docs for the guard and the window)."""

    def __init__(self, patterns: Mapping[str, str] | Sequence[str], *, action: Action = "block",
                 name: str = "regex", max_window: int = 256) -> None:
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
        if isinstance(patterns, str):
            patterns = [patterns]
        items = (list(patterns.items()) if isinstance(patterns, Mapping)
                 else [("pattern", patterns[0])] if len(patterns) == 1
                 else [(f"pattern_{i}", p) for i, p in enumerate(patterns)])
        self.name, self.action = name, action
        self._rules: list[_Rule] = []
        for category, pattern in items:
            try:
                self._rules.append(_rule(category, pattern, max_window))
            except (ValueError, re.error, RecursionError) as e:
                shown = pattern if len(pattern) <= 60 else pattern[:57] + "..."
                raise ValueError(f"regex filter {name!r}, pattern {category!r} ({shown!r}): {e}"
                                 ) from None
        self.window = max((rule.window for rule in self._rules), default=0)

    def scan(self, text: str) -> list[Finding]:
        findings: list[Finding] = []
        lowered = None
        for rule in self._rules:
            if rule.icase and rule.literal.isascii() and text.isascii():
                lowered = text.lower() if lowered is None else lowered
                if rule.literal.lower() not in lowered:
                    continue
            elif not rule.icase and rule.literal not in text:
                continue
            n, overlap = len(text), rule.window + 64  # 64: room for lookarounds
            piece = max(PIECE, 4 * overlap)
            start = last_end = 0
            while start < n:
                end = min(n, start + piece)
                next_start = end if end == n else end - overlap
                for s, e in _matches(rule, text, max(start, last_end), end):
                    if s >= next_start:
                        break
                    findings.append(Finding(self.name, rule.category, s, e, self.action))
                    last_end = e
                start = next_start
        return findings


def _matches(rule: _Rule, text: str, pos: int, end: int) -> Iterator[tuple[int, int]]:
    """The spans ``rule.rx.finditer(text, pos, end)`` would give."""
    if rule.scout is None:
        yield from (m.span() for m in rule.rx.finditer(text, pos, end))
        return
    while (candidate := rule.scout.search(text, pos, end)) is not None:
        found = rule.rx.match(text, candidate.start(), end)
        if found is None:
            pos = candidate.start() + 1
        else:
            yield found.span()
            pos = found.end()
