"""StreamScanner over arbitrary chunkings: redacted streams never carry a match, blocked streams
end with a well-formed exception frame after whole original frames, clean frames pass byte for
byte, and at most the filters' window of text is held back."""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from bedrock_gateway.call import Response
from bedrock_gateway.eventstream import EventStreamDecoder, Frame, event_frame
from bedrock_gateway.filters.base import Action, Finding, redact
from bedrock_gateway.filters.stream import StreamScanner

PHRASE = "launch codes"


class Phrase:
    """A minimal text filter: every occurrence of one phrase."""

    def __init__(self, phrase: str, action: Action) -> None:
        self.name, self.window, self.action = "phrase", len(phrase), action
        self.pattern = re.compile(re.escape(phrase))

    def scan(self, text: str) -> list[Finding]:
        return [Finding(self.name, "secret", m.start(), m.end(), self.action)
                for m in self.pattern.finditer(text)]


def converse_stream(pieces: list[str]) -> list[Frame]:
    raw = [event_frame("messageStart", {"role": "assistant"}),
           event_frame("contentBlockStart", {"contentBlockIndex": 0, "start": {}})]
    raw += [event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p},
                                               "p": "abcdef"}) for p in pieces]
    raw += [event_frame("contentBlockStop", {"contentBlockIndex": 0}),
            event_frame("messageStop", {"stopReason": "end_turn"}),
            event_frame("metadata", {"usage": {"inputTokens": 1, "outputTokens": 2,
                                               "totalTokens": 3}, "metrics": {}})]
    return [Frame(r) for r in raw]


def text_of(frames: list[Frame]) -> str:
    return "".join(f.json()["delta"]["text"] for f in frames  # type: ignore[index]
                   if f.event_type == "contentBlockDelta")


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in pairwise(points)]


texts = st.lists(st.sampled_from(["the ", "launch ", "codes", PHRASE, " are ", "x", "lau",
                                  "nch codes!", "\n", "é"]), min_size=1, max_size=20).map("".join)
cut_lists = st.lists(st.integers(0, 400), max_size=25)


@given(texts, cut_lists)
def test_a_redacted_stream_never_carries_the_phrase(text: str, cuts: list[int]) -> None:
    frames = converse_stream(split(text, cuts))
    out = list(StreamScanner("ConverseStream", [Phrase(PHRASE, "redact")])(iter(frames)))
    got = text_of(out)
    assert PHRASE not in got
    assert got == redact(text, Phrase(PHRASE, "redact").scan(text))
    assert [f.event_type for f in out if f.event_type != "contentBlockDelta"] == [
        "messageStart", "contentBlockStart", "contentBlockStop", "messageStop", "metadata"]
    clean = [f for f in frames if f.event_type != "contentBlockDelta"
             or not _touches(f, frames, text)]
    assert all(f.raw in {o.raw for o in out} for f in clean)  # passed byte for byte


def _touches(frame: Frame, frames: list[Frame], text: str) -> bool:
    """Whether the frame's text overlaps an occurrence of the phrase."""
    pos = 0
    for f in frames:
        if f.event_type != "contentBlockDelta":
            continue
        piece = f.json()["delta"]["text"]  # type: ignore[index]
        if f is frame:
            return any(m.start() < pos + len(piece) and m.end() > pos
                       for m in re.finditer(re.escape(PHRASE), text))
        pos += len(piece)
    return False


@given(texts, cut_lists)
def test_a_blocked_stream_ends_with_an_exception_after_whole_frames(
        text: str, cuts: list[int]) -> None:
    frames = converse_stream(split(text, cuts))
    response = Response(200, {}, frames=iter(frames))
    response.map_frames(StreamScanner("ConverseStream", [Phrase(PHRASE, "block")]))
    wire = b"".join(response.chunks())
    decoded = EventStreamDecoder().feed(wire)  # checks every prelude and CRC
    if PHRASE not in text:
        assert [f.raw for f in decoded] == [f.raw for f in frames]
        return
    *before, last = decoded
    assert last.message_type == "exception" and last.exception_type == "validationException"
    assert "launch codes" not in last.payload.decode()  # the message never quotes the text
    assert [f.raw for f in before] == [f.raw for f in frames[:len(before)]]  # whole originals
    assert PHRASE not in text_of(before)
    assert len(text_of(before)) <= text.index(PHRASE)


@given(texts, cut_lists)
def test_at_most_the_window_is_held_back(text: str, cuts: list[int]) -> None:
    pieces = split(text, cuts)
    frames = converse_stream(pieces)
    fed: list[int] = [0]

    def source() -> Iterator[Frame]:
        for f in frames:
            if f.event_type == "contentBlockDelta":
                fed[0] += len(f.json()["delta"]["text"])  # type: ignore[index]
            yield f

    scanner = StreamScanner("ConverseStream", [Phrase("zzzz", "block")])  # never matches
    released = 0
    longest = max((len(p) for p in pieces), default=0)
    for f in scanner(source()):
        if f.event_type == "contentBlockDelta":
            released += len(f.json()["delta"]["text"])  # type: ignore[index]
        assert fed[0] - released <= scanner.window + scanner.step + longest
    assert released == len(text)


# The same properties with the real PII and deny-terms filters.
PLANTED = ["jane.doe@example.com", "4111 1111 1111 1111", "+1 415 555 0132",
           "Launch   Codes", "\uff4c\uff41\uff55\uff4e\uff43\uff48 codes"]  # fullwidth "launch"
real_texts = st.lists(st.one_of(st.sampled_from(PLANTED), st.sampled_from(
    ["hello", "the", "number 42", ",", "\n", "é"])), min_size=1, max_size=14).map(" ".join)


def _real_filters(action: Action) -> list[object]:
    from bedrock_gateway.filters import DenyTermsFilter, PIIFilter

    return [PIIFilter({"email": action, "credit_card": action, "phone": action}),
            DenyTermsFilter(["launch codes"], action=action)]


@given(real_texts, cut_lists)
def test_pii_and_terms_redacted_in_any_chunking(text: str, cuts: list[int]) -> None:
    frames = converse_stream(split(text, cuts))
    scanner = StreamScanner("ConverseStream", _real_filters("redact"))  # type: ignore[arg-type]
    got = text_of(list(scanner(iter(frames))))
    for planted in PLANTED:
        assert planted not in got
    for flt in _real_filters("redact"):
        assert not flt.scan(got)  # type: ignore[attr-defined]


@given(real_texts, cut_lists)
def test_pii_and_terms_blocked_in_any_chunking(text: str, cuts: list[int]) -> None:
    frames = converse_stream(split(text, cuts))
    response = Response(200, {}, frames=iter(frames))
    response.map_frames(StreamScanner("ConverseStream", _real_filters("block")))  # type: ignore[arg-type]
    decoded = EventStreamDecoder().feed(b"".join(response.chunks()))
    if not any(flt.scan(text) for flt in _real_filters("block")):  # type: ignore[attr-defined]
        assert [f.raw for f in decoded] == [f.raw for f in frames]
        return
    *before, last = decoded
    assert last.message_type == "exception" and last.exception_type == "validationException"
    assert [f.raw for f in before] == [f.raw for f in frames[:len(before)]]
    released = text_of(before)
    assert not any(flt.scan(released) for flt in _real_filters("block"))  # type: ignore[attr-defined]
