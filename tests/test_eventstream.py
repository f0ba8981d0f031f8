"""Property tests of the event-stream codec (and agreement with botocore's own decoder)."""

from __future__ import annotations

import uuid
import zlib
from datetime import UTC, datetime

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given
from hypothesis import strategies as st

from bedrock_gateway.eventstream import (
    EventStreamDecoder,
    EventStreamError,
    Int8,
    Int16,
    Int64,
    encode_frame,
    event_frame,
    exception_frame,
    iter_frames,
)

names = st.text(min_size=1, max_size=20).filter(lambda s: 0 < len(s.encode()) < 256)
values = st.one_of(
    st.booleans(),
    st.integers(-(2**7), 2**7 - 1).map(Int8),
    st.integers(-(2**15), 2**15 - 1).map(Int16),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-(2**63), 2**63 - 1).map(Int64),
    st.binary(max_size=64),
    st.text(max_size=64),
    st.integers(0, 2**42).map(lambda ms: datetime.fromtimestamp(ms / 1000, UTC)),
    st.uuids(),
)
headers = st.dictionaries(names, values, max_size=6)
frames = st.tuples(headers, st.binary(max_size=512))


@given(frames)
def test_round_trip(frame: tuple[dict[str, object], bytes]) -> None:
    hdrs, payload = frame
    raw = encode_frame(hdrs, payload)  # type: ignore[arg-type]
    (decoded,) = EventStreamDecoder().feed(raw)
    assert decoded.raw == raw
    assert decoded.payload == payload
    assert decoded.headers == hdrs


@given(st.lists(frames, min_size=1, max_size=8), st.data())
def test_any_split_decodes_to_the_same_frames(items: list[tuple[dict[str, object], bytes]],
                                              data: st.DataObject) -> None:
    raws = [encode_frame(h, p) for h, p in items]  # type: ignore[arg-type]
    stream = b"".join(raws)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    decoded = list(iter_frames(pieces))
    assert [f.raw for f in decoded] == raws


@given(frames, st.data())
def test_corruption_is_rejected(frame: tuple[dict[str, object], bytes], data: st.DataObject) -> None:
    raw = bytearray(encode_frame(*frame))  # type: ignore[arg-type]
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    decoder = EventStreamDecoder()
    with pytest.raises(EventStreamError):
        decoder.feed(bytes(raw))
        decoder.finish()


@given(st.lists(frames, min_size=1, max_size=4))
def test_botocore_reads_what_we_write(items: list[tuple[dict[str, object], bytes]]) -> None:
    buf = EventStreamBuffer()
    for h, p in items:
        buf.add_data(encode_frame(h, p))  # type: ignore[arg-type]
    parsed = list(buf)
    assert [m.payload for m in parsed] == [p for _, p in items]


def test_truncated_stream_is_an_error() -> None:
    raw = event_frame("chunk", {"bytes": "eyJ9"})
    with pytest.raises(EventStreamError, match="inside a frame"):
        list(iter_frames([raw, raw[:10]]))


def test_exception_frame_shape() -> None:
    (frame,) = EventStreamDecoder().feed(exception_frame("throttlingException", "slow down"))
    assert frame.message_type == "exception"
    assert frame.exception_type == "throttlingException"
    assert frame.json() == {"message": "slow down"}


def test_impossible_lengths_and_limits() -> None:
    prelude = (8).to_bytes(4, "big") + (0).to_bytes(4, "big")
    bad = prelude + zlib.crc32(prelude).to_bytes(4, "big")
    with pytest.raises(EventStreamError, match="impossible"):
        EventStreamDecoder().feed(bad)
    big = encode_frame({"a": "b"}, b"x" * 100)
    with pytest.raises(EventStreamError, match="size limit"):
        EventStreamDecoder(max_payload=10).feed(big)


def test_uuid_and_timestamp_headers() -> None:
    u = uuid.uuid4()
    when = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    (frame,) = EventStreamDecoder().feed(encode_frame({"id": u, "at": when}))
    assert frame.headers == {"id": u, "at": when}
