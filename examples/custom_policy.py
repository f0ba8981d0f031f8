"""A policy of your own: some tenants may call models on weekdays, 08:00-18:00 local time only.

A middleware is any callable ``(call, next_) -> Response``. Raising a ``bedrock_gateway`` error
refuses the call: the client gets a Bedrock-shaped error, and boto3 raises the typed exception
(here ``AccessDeniedException``). The clock is a parameter, so tests need not wait for Saturday.

    gateway = Gateway(SigV4Forwarder(region="us-east-1"),
                      [OfficeHours({"contractors"}, ZoneInfo("Europe/Berlin"))],
                      authorizers=[...])
"""

from collections.abc import Callable, Collection
from datetime import UTC, datetime, time, tzinfo

from bedrock_gateway import AccessDeniedError, Call, Next, Response


class OfficeHours:
    def __init__(self, tenants: Collection[str], tz: tzinfo, *, start: time = time(8),
                 end: time = time(18), clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.tenants, self.tz, self.start, self.end, self.clock = set(tenants), tz, start, end, clock

    def __call__(self, call: Call, next_: Next) -> Response:
        tenant = call.principal.tenant if call.principal else None
        if tenant in self.tenants:
            now = self.clock().astimezone(self.tz)
            if now.weekday() >= 5 or not self.start <= now.time() < self.end:
                raise AccessDeniedError(f"Tenant {tenant} may call models on weekdays from "
                                        f"{self.start:%H:%M} to {self.end:%H:%M} ({self.tz}) only.")
        return next_(call)
