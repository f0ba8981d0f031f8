"""StartAsyncInvoke / GetAsyncInvoke / ListAsyncInvokes against an in-memory store.

Invocations complete at once (status ``Completed``); nothing is written to S3. A repeated
``clientRequestToken`` returns the first invocation's ARN, as Bedrock's idempotency does. Nova
Reel ``modelInput`` is validated as Bedrock validates it (``fake_media.check_async_input``:
task type per model version, duration, fps, dimension); other models' input is not checked.
"""

from __future__ import annotations

import secrets
import string
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from bedrock_gateway.errors import ResourceNotFoundError, ValidationError
from bedrock_gateway.testing.fake_media import check_async_input
from bedrock_gateway.testing.fake_text import check_model_id, load_json_object

__all__ = ["AsyncInvokeStore"]

_ALNUM = string.ascii_lowercase + string.digits
_ACCOUNT = "123456789012"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"Not an ISO 8601 timestamp: {value}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _submitted(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["submitTime"])


class AsyncInvokeStore:
    """Thread-safe record of started async invocations, in submission order."""

    def __init__(self, region: str, clock: Callable[[], datetime]) -> None:
        self._region = region
        self._clock = clock
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, str] = {}

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._tokens.clear()

    def start(self, body: bytes) -> dict[str, Any]:
        request = load_json_object(body)
        for key in ("modelId", "modelInput", "outputDataConfig"):
            if key not in request:
                raise ValidationError(f"{key} is required.")
        model_id = str(request["modelId"])
        check_model_id(model_id)
        check_async_input(model_id, request["modelInput"])
        output = request["outputDataConfig"]
        s3 = output.get("s3OutputDataConfig") if isinstance(output, dict) else None
        if not isinstance(s3, dict) or not str(s3.get("s3Uri", "")).startswith("s3://"):
            raise ValidationError("outputDataConfig.s3OutputDataConfig.s3Uri must be an s3:// URI.")
        token = request.get("clientRequestToken")
        with self._lock:
            if isinstance(token, str) and token in self._tokens:
                return {"invocationArn": self._tokens[token]}
            suffix = "".join(secrets.choice(_ALNUM) for _ in range(12))
            arn = f"arn:aws:bedrock:{self._region}:{_ACCOUNT}:async-invoke/{suffix}"
            now = _iso(self._clock())
            model_arn = (
                model_id
                if model_id.startswith("arn:")
                else f"arn:aws:bedrock:{self._region}::foundation-model/{model_id}"
            )
            record: dict[str, Any] = {
                "invocationArn": arn,
                "modelArn": model_arn,
                "status": "Completed",
                "submitTime": now,
                "lastModifiedTime": now,
                "endTime": now,
                "outputDataConfig": output,
            }
            if isinstance(token, str):
                record["clientRequestToken"] = token
                self._tokens[token] = arn
            self._records[arn] = record
        return {"invocationArn": arn}

    def get(self, invocation_arn: str) -> dict[str, Any]:
        with self._lock:
            record = self._records.get(invocation_arn)
        if record is None:
            raise ResourceNotFoundError(f"The invocation {invocation_arn} was not found.")
        return dict(record)

    def list(self, query: str) -> dict[str, Any]:
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        try:
            max_results = int(params.get("maxResults", "1000"))
            start = int(params.get("nextToken", "0") or "0")
        except ValueError:
            raise ValidationError("maxResults and nextToken must be integers.") from None
        if not 1 <= max_results <= 1000 or start < 0:
            raise ValidationError("maxResults must be between 1 and 1000.")
        with self._lock:
            records = [dict(r) for r in self._records.values()]
        status = params.get("statusEquals")
        after = _moment(params.get("submitTimeAfter"))
        before = _moment(params.get("submitTimeBefore"))
        records = [
            r
            for r in records
            if (status is None or r["status"] == status)
            and (after is None or _submitted(r) > after)
            and (before is None or _submitted(r) < before)
        ]
        if params.get("sortOrder", "Descending") == "Descending":
            records.reverse()
        page = records[start : start + max_results]
        answer: dict[str, Any] = {"asyncInvokeSummaries": page}
        if start + max_results < len(records):
            answer["nextToken"] = str(start + max_results)
        return answer
