"""The usage of one response, measured once for every policy that needs it.

The quota enforcer settles from it and the usage recorder writes it down; whichever asks first
attaches the meter (:meth:`Meter.of`), later callers get the same one. A buffered answer is read
once; a stream is metered frame by frame as it passes (nothing buffered or delayed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from bedrock_gateway.call import Call, Response
from bedrock_gateway.errors import GatewayError
from bedrock_gateway.eventstream import Frame
from bedrock_gateway.quota.usage import StreamUsage, Usage, usage_from_response

__all__ = ["QUOTA_NOTE", "Meter", "QuotaNote"]

_KEY = "bedrock_gateway.meter"
QUOTA_NOTE = "bedrock_gateway.quota"  # call.attrs key of the enforcer's QuotaNote


@dataclass(slots=True)
class QuotaNote:
    """What the quota enforcer did with a call, for the usage record."""

    limits: tuple[str, ...] = ()
    cost_usd: Decimal | None = None  # what the budgets were charged (set when settled)
    estimated: bool = False  # the charge is the worst case: the final usage never arrived


def _error_code(headers: dict[str, str]) -> str | None:
    value = headers.get("x-amzn-errortype")
    return value.split(":")[0] if value else None


class Meter:
    """``usage`` (``None`` when unknown), ``complete`` (the answer arrived whole) and the
    ``error`` code of a failed call or stream."""

    __slots__ = ("_stream", "_usage", "complete", "error", "status", "streamed")

    def __init__(self, call: Call, response: Response) -> None:
        self.status = response.status
        self.streamed = response.is_stream
        self.error = _error_code(response.headers) if response.status != 200 else None
        self._usage: Usage | None = None
        self._stream: StreamUsage | None = None
        if response.is_stream:
            self.complete = False
            self._stream = StreamUsage(call.operation.name, call.model_id, response.headers)
            response.map_frames(self._tap)
        else:
            self.complete = True
            if response.status == 200:
                self._usage = usage_from_response(call.operation.name, call.model_id,
                                                  response.headers, response.body)

    @classmethod
    def of(cls, call: Call, response: Response) -> Meter:
        meter = call.attrs.get(_KEY)
        if not isinstance(meter, Meter):
            meter = call.attrs[_KEY] = cls(call, response)
        return meter

    @property
    def usage(self) -> Usage | None:
        return self._stream.usage if self._stream is not None else self._usage

    def _tap(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        assert self._stream is not None
        observe = self._stream.observe
        try:
            for frame in frames:
                observe(frame)
                if frame.message_type in ("exception", "error"):
                    self.error = frame.exception_type
                yield frame
        except GatewayError as exc:
            self.error = exc.code
            raise
        else:
            self.complete = self.error is None
