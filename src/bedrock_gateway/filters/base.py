"""What every content filter is: a pure object that looks at text (or a request) and answers.

A **text filter** (:class:`TextFilter`: deny terms, regular expressions, PII) scans one string
and returns :class:`Finding` objects — which filter, which category, where, and what to do
(``block``, ``redact`` or ``log``). It does no I/O, keeps no state between calls and never
sees more than the text it is given, so a user tests one with two lines::

    findings = PIIFilter(categories={"email": "redact"}).scan("mail me: a@b.example")
    assert [(f.category, f.action) for f in findings] == [("email", "redact")]

``window`` is the longest span a match can cover (characters); stream scanning holds back that
much text so a match split across chunks is still caught (``filters/stream.py``).

A **request policy** (:class:`RequestPolicy`: size limits, parameter policies) looks at the
parsed request body of one operation; it may rewrite it in place (clamp a value, strip a field)
and returns findings for what it refuses.

:func:`verdict` combines findings: any ``block`` blocks; otherwise ``redact`` spans are replaced
(:func:`redact`); ``log`` findings are only recorded. Messages name the filter and the category,
never the matched text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "ACTIONS",
    "Action",
    "Finding",
    "RequestPolicy",
    "TextFilter",
    "Verdict",
    "redact",
    "verdict",
]

Action = Literal["block", "redact", "log"]
ACTIONS: tuple[Action, ...] = ("block", "redact", "log")


@dataclass(frozen=True, slots=True)
class Finding:
    """One match: ``text[start:end]`` is what matched (never put it in a message or a log)."""

    filter: str  # the filter's name, e.g. "pii" or a configured name
    category: str  # e.g. "email", "credit_card", "term", "pattern", "max_tokens"
    start: int
    end: int
    action: Action

    @property
    def label(self) -> str:
        return f"{self.filter}:{self.category}"


@runtime_checkable
class TextFilter(Protocol):
    """Scans text. Pure: same text, same findings; no I/O."""

    name: str
    window: int  # the longest span one match can cover, in characters

    def scan(self, text: str) -> list[Finding]: ...


@runtime_checkable
class RequestPolicy(Protocol):
    """Checks (and may rewrite in place) the parsed body of one request."""

    name: str

    def apply(self, operation: str, model_id: str | None, body: dict[str, Any]
              ) -> list[Finding]: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    findings: tuple[Finding, ...] = ()

    @property
    def blocked(self) -> Finding | None:
        """The blocking finding that starts first in the text, if any (a stream is cut there)."""
        return min((f for f in self.findings if f.action == "block"), key=lambda f: f.start,
                   default=None)

    @property
    def redactions(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.action == "redact")

    def message(self, where: str = "request") -> str:
        """A client-facing reason: filter and category, never the matched text."""
        first = self.blocked
        assert first is not None
        return (f"The {where} was blocked by the gateway's content filter {first.filter!r}"
                f" (category: {first.category}).")


def verdict(findings: Iterable[Finding]) -> Verdict:
    return Verdict(tuple(findings))


def placeholder(category: str) -> str:
    return f"[{category.upper()}]"


def redact(text: str, findings: Sequence[Finding], start: int = 0) -> str:
    """``text`` with every ``redact`` span replaced by ``[CATEGORY]`` (overlapping spans are
    merged; the earliest category names the merged span).

    ``start`` says where ``text`` sits in the text the findings were made on (a piece of a
    stream): a span that begins inside ``text`` leaves its placeholder; the parts of spans
    that began earlier are only removed."""
    end = start + len(text)
    spans = sorted((f.start, f.end, f.category) for f in findings
                   if f.action == "redact" and f.start < end and f.end > start)
    if not spans:
        return text
    merged: list[tuple[int, int, str]] = []
    for s, e, category in spans:
        if merged and s < merged[-1][1]:
            ms, me, mcat = merged[-1]
            merged[-1] = (ms, max(me, e), mcat)
        else:
            merged.append((s, e, category))
    out, pos = [], start
    for s, e, category in merged:
        out.append(text[pos - start : max(s, start) - start])
        if s >= start:
            out.append(placeholder(category))
        pos = min(e, end)
    out.append(text[pos - start :])
    return "".join(out)
