"""Unit tests for custom_policy.OfficeHours: in-process, no network, a fixed clock."""

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bedrock_gateway import Call, Gateway, Principal, Response
from custom_policy import OfficeHours

BERLIN = ZoneInfo("Europe/Berlin")
CONVERSE = "/model/us.amazon.nova-lite-v1%3A0/converse"


def run(at: datetime, tenant: str) -> tuple[Response, list[Call]]:
    """One Converse call by ``tenant`` at ``at``; returns the answer and what reached Bedrock."""
    reached: list[Call] = []

    def bedrock(call: Call) -> Response:  # stands in for the forwarder
        reached.append(call)
        return Response(200, body=b"{}")

    gateway = Gateway(bedrock, [OfficeHours({"contractors"}, BERLIN, clock=lambda: at)], anonymous=True)
    # principal=: the caller as an authorizer would have identified it
    return gateway.handle("POST", CONVERSE, "", {}, b"{}", principal=Principal("dana", tenant=tenant)), reached


@pytest.mark.parametrize(("at", "allowed"), [
    (datetime(2025, 1, 17, 16, 59, tzinfo=UTC), True),   # Friday 17:59 in Berlin (UTC+1)
    (datetime(2025, 1, 17, 17, 0, tzinfo=UTC), False),   # Friday 18:00: closed
    (datetime(2025, 1, 20, 6, 59, tzinfo=UTC), False),   # Monday 07:59: not yet
    (datetime(2025, 7, 14, 6, 30, tzinfo=UTC), True),    # Monday 08:30 in summer (UTC+2)
    (datetime(2025, 1, 18, 12, 0, tzinfo=UTC), False),   # Saturday noon
])
def test_contractors_only_in_office_hours(at: datetime, allowed: bool) -> None:
    response, reached = run(at, "contractors")
    assert (response.status, len(reached)) == ((200, 1) if allowed else (403, 0))
    if not allowed:
        assert response.headers["x-amzn-errortype"].startswith("AccessDeniedException")
        assert json.loads(response.body)["message"] == (
            "Tenant contractors may call models on weekdays from 08:00 to 18:00 (Europe/Berlin) only.")


def test_other_tenants_any_time() -> None:
    response, reached = run(datetime(2025, 1, 18, 3, 0, tzinfo=UTC), "staff")  # Saturday night
    assert response.status == 200 and len(reached) == 1
