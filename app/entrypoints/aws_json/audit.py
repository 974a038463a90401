"""AWS JSON 1.1 operation GetKeyLastUsage: the last successful cryptographic use of a key.

``OPERATIONS`` is merged into ``app.entrypoints.aws_json.handler.OPERATIONS``.
"""

from __future__ import annotations

from typing import Any

from app.auth.credentials import Caller
from app.entrypoints.aws_json.common import Operation
from app.usecases.keys import KeyService


async def get_key_last_usage(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    usage = await service.audit.key_last_usage(caller, params["KeyId"])
    last: dict[str, Any] = {}
    if usage.operation is not None and usage.timestamp is not None:
        last = {
            "Operation": usage.operation,
            "Timestamp": usage.timestamp.timestamp(),
            "CloudTrailEventId": usage.cloudtrail_event_id,
            "KmsRequestId": usage.request_id,
        }
    return {
        "KeyId": usage.key_id,
        "KeyLastUsage": last,
        "TrackingStartDate": usage.tracking_start_date.timestamp(),
        "KeyCreationDate": usage.key_creation_date.timestamp(),
    }


OPERATIONS: dict[str, Operation] = {"GetKeyLastUsage": get_key_last_usage}
