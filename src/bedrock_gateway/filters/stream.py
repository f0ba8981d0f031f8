"""Output filters on a stream, as it flows: a bounded hold-back, whole frames, exact bytes.

The text a stream generates is spread over frames (ConverseStream ``contentBlockDelta`` events,
InvokeModelWithResponseStream chunks) and a match — a phrase, an e-mail address — can be split
across any of them. :class:`StreamScanner` keeps the frames whose text might still be part of a
match *not yet complete*, and releases the others:

- Every text filter declares ``window``, the longest span one match can cover. After each text
  frame the scanner scans the held text plus ``window`` characters of already released text
  (left context). A match that starts more than ``window + 1`` characters before the end of what
  has arrived is *final*: it lies entirely in the text seen, with at least one character of
  right context (word boundaries), so no later frame can change it. Frames whose text ends at
  or before that point are released. Scans run once per ``step`` (an eighth of the window, at
  least 16) new characters rather than per frame, so at most ``window + step`` characters
  (plus the frame being read) are held back at any moment; frames without text wait only if
  text frames before them wait.
- A frame none of whose text is redacted is released **byte for byte** (its original ``raw``).
  A frame touched by a redaction is re-encoded with the redacted text (``with_text``): the
  placeholder goes where the match starts, the rest of the match is dropped from the frames it
  spans, and every other field and header of those frames is kept.
- On a final ``block`` finding, the frames entirely before the match are released, then the
  stream stops with a ``validationException`` frame (a modelled exception: botocore raises
  ``EventStreamError`` with code ``validationException``) — only whole frames before it.
- At the end of the stream every finding is final and everything held is released.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from bedrock_gateway.errors import ValidationError
from bedrock_gateway.eventstream import Frame
from bedrock_gateway.filters.base import Finding, TextFilter, redact, verdict
from bedrock_gateway.filters.text import frame_text, with_text

__all__ = ["StreamScanner"]


class StreamScanner:
    """Wraps a frame iterator (``response.map_frames(StreamScanner(...))``)."""

    def __init__(self, operation: str, filters: Sequence[TextFilter], *,
                 on_finding: Callable[[Finding], None] | None = None) -> None:
        self.operation = operation
        self.filters = tuple(filters)
        self.window = max((f.window for f in self.filters), default=0) + 1
        # Scan once per ``step`` new characters, not per frame: every scan reads about a
        # window of text, so scanning per 5-character delta would read the same text a
        # hundred times. The price: up to ``step`` more characters held back.
        self.step = max(16, self.window // 8)
        self._unscanned = 0
        self.on_finding = on_finding
        self._context = ""  # the last ``window`` characters of released (original) text
        self._held: list[tuple[Frame, str | None]] = []
        self._text = ""  # the text of the held frames
        self._released = 0  # characters of text released so far (absolute position)
        self._seen: set[tuple[int, int, str]] = set()

    def __call__(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        operation = self.operation
        for frame in frames:
            text = frame_text(operation, frame)
            if text is None and not self._held:
                yield frame  # nothing waits: a frame without text passes at once
                continue
            self._held.append((frame, text))
            if text:
                self._text += text
                self._unscanned += len(text)
                if self._unscanned >= self.step and len(self._text) > self.window:
                    self._unscanned = 0
                    yield from self._release(final=False)
        yield from self._release(final=True)

    def _release(self, *, final: bool) -> Iterator[Frame]:
        context, held_text = self._context, self._text
        scanned = context + held_text
        base = len(context)  # where held text starts in ``scanned``
        limit = len(scanned) if final else len(scanned) - self.window
        findings = [f for flt in self.filters for f in flt.scan(scanned)
                    if f.end > base and f.start < limit]
        self._note(findings, base)
        v = verdict(findings)
        block = v.blocked
        cut = limit - base  # release held frames whose text ends at or before this
        if block is not None:
            cut = min(cut, block.start - base)
        redactions = list(v.redactions)
        out: list[Frame] = []
        pos = 0  # position in held_text
        count = 0
        for frame, text in self._held:
            length = len(text) if text else 0
            if pos + length > cut:
                break
            if text and redactions:
                new = redact(text, redactions, base + pos)
                out.append(Frame(with_text(self.operation, frame, new)) if new != text else frame)
            else:
                out.append(frame)
            pos += length
            count += 1
        del self._held[:count]
        released, self._text = held_text[:pos], held_text[pos:]
        self._released += pos
        self._context = (context + released)[-self.window:]
        yield from out
        if block is not None:
            self._held.clear()
            raise ValidationError(v.message("model output"))

    def _note(self, findings: list[Finding], base: int) -> None:
        if self.on_finding is None:
            return
        origin = self._released - base  # absolute position of scanned[0]
        for f in findings:
            key = (origin + f.start, origin + f.end, f.label)
            if key not in self._seen:
                self._seen.add(key)
                self.on_finding(f)
