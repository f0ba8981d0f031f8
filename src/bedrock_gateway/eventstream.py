"""The ``application/vnd.amazon.eventstream`` codec.

A message on the wire::

    prelude  total_length u32 | headers_length u32 | prelude_crc u32   (big-endian)
    headers  { name_len u8 | name | type u8 | value } ...
    payload  total_length - headers_length - 16 bytes
    trailer  message_crc u32 over every preceding byte of the message

:class:`EventStreamDecoder` finds frame boundaries in arbitrarily split input and keeps each
frame's exact bytes (:attr:`Frame.raw`), so pass-through is byte-exact and the stream is parsed
once for every policy that looks at it. Headers and payload are decoded lazily, on first use.
:func:`encode_frame` writes the frames the gateway produces itself (exception frames, frames
re-encoded by a filter, a fake upstream).
"""

from __future__ import annotations

import json
import struct
import uuid
import zlib
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime

__all__ = [
    "MAX_HEADERS_BYTES",
    "MAX_PAYLOAD_BYTES",
    "EventStreamDecoder",
    "EventStreamError",
    "Frame",
    "HeaderValue",
    "Int8",
    "Int16",
    "Int64",
    "encode_frame",
    "event_frame",
    "exception_frame",
    "iter_frames",
]

MAX_HEADERS_BYTES = 128 * 1024
MAX_PAYLOAD_BYTES = 24 * 1024 * 1024
_PRELUDE = struct.Struct(">III")
_U32 = struct.Struct(">I")
_OVERHEAD = 16  # prelude (12) + message crc (4)


class Int8(int):
    """An int header written as int8 (plain ``int`` is written as int32 or int64)."""


class Int16(int):
    """An int header written as int16."""


class Int64(int):
    """An int header written as int64 even when it would fit in int32."""


HeaderValue = bool | int | bytes | str | datetime | uuid.UUID


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (bad CRC, impossible lengths, truncation)."""


class Frame:
    """One event-stream message: its exact wire bytes and, on demand, headers and payload."""

    __slots__ = ("_headers", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._headers: dict[str, HeaderValue] | None = None

    @property
    def headers(self) -> dict[str, HeaderValue]:
        if self._headers is None:
            hlen = _U32.unpack_from(self.raw, 4)[0]
            self._headers = _decode_headers(self.raw, 12, 12 + hlen)
        return self._headers

    @property
    def payload(self) -> bytes:
        hlen = _U32.unpack_from(self.raw, 4)[0]
        return self.raw[12 + hlen : -4]

    def _str_header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value if isinstance(value, str) else None

    @property
    def message_type(self) -> str | None:
        """``event``, ``exception`` or ``error``."""
        return self._str_header(":message-type")

    @property
    def event_type(self) -> str | None:
        return self._str_header(":event-type")

    @property
    def exception_type(self) -> str | None:
        return self._str_header(":exception-type") or self._str_header(":error-code")

    def json(self) -> object:
        """The payload parsed as JSON."""
        return json.loads(self.payload)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Frame) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        kind = self.event_type or self.exception_type
        return f"Frame({self.message_type}:{kind}, {len(self.raw)} B)"


def _decode_headers(buf: bytes, pos: int, end: int) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    try:
        while pos < end:
            nlen = buf[pos]
            name = buf[pos + 1 : pos + 1 + nlen].decode()
            pos += 1 + nlen
            kind = buf[pos]
            pos += 1
            value: HeaderValue
            if kind in (0, 1):
                value = kind == 0
            elif kind == 2:
                value = struct.unpack_from(">b", buf, pos)[0]
                pos += 1
            elif kind == 3:
                value = struct.unpack_from(">h", buf, pos)[0]
                pos += 2
            elif kind == 4:
                value = struct.unpack_from(">i", buf, pos)[0]
                pos += 4
            elif kind in (5, 8):
                raw = struct.unpack_from(">q", buf, pos)[0]
                value = raw if kind == 5 else datetime.fromtimestamp(raw / 1000, UTC)
                pos += 8
            elif kind in (6, 7):
                vlen = struct.unpack_from(">H", buf, pos)[0]
                data = buf[pos + 2 : pos + 2 + vlen]
                if len(data) != vlen:
                    raise EventStreamError("header value runs past the header block")
                value = data if kind == 6 else data.decode()
                pos += 2 + vlen
            elif kind == 9:
                value = uuid.UUID(bytes=bytes(buf[pos : pos + 16]))
                pos += 16
            else:
                raise EventStreamError(f"unknown header type {kind}")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, EventStreamError):
            raise
        raise EventStreamError("malformed header block") from exc
    if pos != end:
        raise EventStreamError("header block length mismatch")
    return headers


def _encode_header(name: str, value: HeaderValue) -> bytes:
    bname = name.encode()
    if not 0 < len(bname) < 256:
        raise ValueError(f"header name must be 1..255 bytes: {name!r}")
    head = bytes([len(bname)]) + bname
    if isinstance(value, bool):
        return head + bytes([0 if value else 1])
    if isinstance(value, Int8):
        return head + b"\x02" + struct.pack(">b", value)
    if isinstance(value, Int16):
        return head + b"\x03" + struct.pack(">h", value)
    if isinstance(value, int):
        if not isinstance(value, Int64) and -(2**31) <= value < 2**31:
            return head + b"\x04" + struct.pack(">i", value)
        return head + b"\x05" + struct.pack(">q", value)
    if isinstance(value, bytes | str):
        data = value if isinstance(value, bytes) else value.encode()
        kind = b"\x06" if isinstance(value, bytes) else b"\x07"
        return head + kind + struct.pack(">H", len(data)) + data
    if isinstance(value, datetime):
        return head + b"\x08" + struct.pack(">q", round(value.timestamp() * 1000))
    if isinstance(value, uuid.UUID):
        return head + b"\x09" + value.bytes
    raise TypeError(f"unsupported header value type: {type(value).__name__}")


def encode_frame(headers: Mapping[str, HeaderValue], payload: bytes = b"") -> bytes:
    """Encode one message. Header order follows the mapping's order."""
    block = b"".join(_encode_header(name, value) for name, value in headers.items())
    if len(block) > MAX_HEADERS_BYTES or len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError("event-stream headers or payload over the protocol limit")
    total = _OVERHEAD + len(block) + len(payload)
    prelude = struct.pack(">II", total, len(block))
    head = prelude + _U32.pack(zlib.crc32(prelude))
    crc = zlib.crc32(payload, zlib.crc32(block, zlib.crc32(head)))
    return head + block + payload + _U32.pack(crc)


def event_frame(event_type: str, payload: object) -> bytes:
    """A JSON ``event`` frame as Bedrock writes them (``payload`` is serialized compactly)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return encode_frame(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        body,
    )


def exception_frame(exception_type: str, message: str) -> bytes:
    """A modelled exception frame; ``exception_type`` is lowerCamel (``throttlingException``)."""
    return encode_frame(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps({"message": message}).encode(),
    )


class EventStreamDecoder:
    """Incremental decoder: ``feed`` bytes as they arrive, get back the complete frames."""

    __slots__ = ("_buf", "max_headers", "max_payload")

    def __init__(
        self, *, max_payload: int = MAX_PAYLOAD_BYTES, max_headers: int = MAX_HEADERS_BYTES
    ) -> None:
        self._buf = bytearray()
        self.max_payload = max_payload
        self.max_headers = max_headers

    @property
    def pending(self) -> int:
        """Bytes held that do not yet form a whole frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        if self._buf:
            self._buf += data
            buf: bytes | bytearray = self._buf
        else:
            buf = data
        frames: list[Frame] = []
        pos = 0
        end = len(buf)
        while end - pos >= 12:
            total, hlen, prelude_crc = _PRELUDE.unpack_from(buf, pos)
            if zlib.crc32(buf[pos : pos + 8]) != prelude_crc:
                raise EventStreamError("prelude CRC mismatch")
            if total < _OVERHEAD or hlen > total - _OVERHEAD:
                raise EventStreamError("impossible frame lengths")
            if hlen > self.max_headers or total - hlen - _OVERHEAD > self.max_payload:
                raise EventStreamError("frame over the size limit")
            if end - pos < total:
                break
            raw = bytes(buf[pos : pos + total])
            if zlib.crc32(memoryview(raw)[:-4]) != _U32.unpack_from(raw, total - 4)[0]:
                raise EventStreamError("message CRC mismatch")
            frames.append(Frame(raw))
            pos += total
        if buf is self._buf:
            del self._buf[:pos]
        elif pos < end:
            self._buf += memoryview(data)[pos:]
        return frames

    def finish(self) -> None:
        """Declare the input ended; raises if it stopped inside a frame."""
        if self._buf:
            n = len(self._buf)
            self._buf.clear()
            raise EventStreamError(f"stream ended inside a frame ({n} bytes pending)")


def iter_frames(chunks: Iterable[bytes]) -> Iterator[Frame]:
    """Decode a whole chunked stream (for tests, fakes and tools)."""
    decoder = EventStreamDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    decoder.finish()
