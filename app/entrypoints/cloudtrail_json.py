"""The CloudTrail JSON 1.1 protocol at ``POST /``: LookupEvents over the audit trail.

``boto3.client("cloudtrail", endpoint_url=...)`` works unchanged: botocore sends
``X-Amz-Target: com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents``,
signed for the service ``cloudtrail``. An adapter like app/entrypoints/aws_json/handler.py:
it authenticates, validates against botocore's own model of CloudTrail, calls the auditors'
use case (app/usecases/auditors.py) and shapes the answer; the call itself is audited
(app/usecases/auditing.py).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from app.aws.errors import aws_error, error_document
from app.entrypoints.aws_json.asgi import respond as _respond
from app.entrypoints.aws_json.shapes import parse_request
from app.entrypoints.signed_requests import authenticate_request
from app.support.request_ids import new_request_id
from domain.audit import (
    CLOUDTRAIL_SOURCE,
    InvalidEventCategoryError,
    InvalidLookupAttributesError,
    InvalidMaxResultsError,
    InvalidTimeRangeError,
)
from domain.errors import DomainError, SerializationError, UnknownOperationError
from projections.audit_queries import AuditFilter, AuditRow

if TYPE_CHECKING:
    from app.auth.credentials import IdentityDirectory
    from app.usecases.auditing import Auditor
    from app.usecases.auditors import AuditService

log = logging.getLogger("keyledger.cloudtrail")

TARGET_PREFIX = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101."
MAX_RESULTS = 50
MAX_ATTRIBUTE_VALUE = 2000  # CloudTrail counts "_", " ", "," and a newline as two
EVENT_CATEGORIES = ("insight",)
ATTRIBUTES = {
    "EventId": "event_id",
    "EventName": "event_name",
    "ReadOnly": "read_only",
    "Username": "username",
    "ResourceType": "resource_type",
    "ResourceName": "resource",
    "EventSource": "event_source",
    "AccessKeyId": "access_key_id",
}


def is_cloudtrail_target(target: str) -> bool:
    return target.startswith(TARGET_PREFIX)


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidTimeRangeError(
            "The time range is outside the range of possible values."
        ) from None


def lookup_filter(params: dict[str, Any]) -> AuditFilter:
    """LookupEvents' members (validated by ``check_lookup``) as a query over the trail."""
    values: dict[str, Any] = {}
    for attribute in params.get("LookupAttributes") or []:
        name = ATTRIBUTES[attribute["AttributeKey"]]
        value: Any = attribute["AttributeValue"]
        if name == "read_only":
            value = value == "true"
        values[name] = value
    return AuditFilter(
        start=_time(params.get("StartTime")), end=_time(params.get("EndTime")), **values
    )


def check_lookup(body: bytes) -> None:
    """CloudTrail's own answers to a bad LookupEvents request, before the model's generic
    ones (botocore checks only MaxResults' minimum, and not at all with validation off)."""
    try:
        document = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError:
        return  # parse_request answers SerializationException
    if not isinstance(document, dict):
        return
    value = document.get("MaxResults")
    if isinstance(value, int) and not isinstance(value, bool) and not 1 <= value <= MAX_RESULTS:
        raise InvalidMaxResultsError(f"MaxResults must be between 1 and {MAX_RESULTS}.")
    category = document.get("EventCategory")
    if isinstance(category, str) and category not in EVENT_CATEGORIES:
        raise InvalidEventCategoryError(f"Invalid EventCategory: {category}")
    attributes = document.get("LookupAttributes")
    if isinstance(attributes, list):
        _check_attributes(attributes)


def _check_attributes(attributes: list[Any]) -> None:
    if len(attributes) > 1:
        raise InvalidLookupAttributesError("You cannot specify more than one lookup attribute.")
    for attribute in attributes:
        if not isinstance(attribute, dict):
            continue  # parse_request answers SerializationException
        key = attribute.get("AttributeKey")
        if not isinstance(key, str) or key not in ATTRIBUTES:
            raise InvalidLookupAttributesError(f"Invalid lookup attribute key: {key}")
        value = attribute.get("AttributeValue")
        if value is not None and not isinstance(value, str):
            continue  # parse_request answers SerializationException
        if not value:
            raise InvalidLookupAttributesError(f"The value of the {key} attribute is empty.")
        weight = len(value) + sum(value.count(c) for c in ("_", " ", ",", "\n"))
        if weight > MAX_ATTRIBUTE_VALUE:
            raise InvalidLookupAttributesError(
                f"The value of the {key} attribute is longer than {MAX_ATTRIBUTE_VALUE}."
            )
        if key == "ReadOnly" and value not in ("true", "false"):
            raise InvalidLookupAttributesError("ReadOnly must be 'true' or 'false'.")


def event_entry(row: AuditRow) -> dict[str, Any]:
    """One Events member of LookupEvents' answer."""
    entry: dict[str, Any] = {
        "EventId": str(row.event_id),
        "EventName": row.event_name,
        "ReadOnly": "true" if row.read_only else "false",
    }
    if row.access_key_id:
        entry["AccessKeyId"] = row.access_key_id
    entry["EventTime"] = row.event_time.timestamp()
    entry["EventSource"] = row.event_source
    if row.username:
        entry["Username"] = row.username
    entry["Resources"] = [
        {"ResourceType": row.resource_type, "ResourceName": arn} for arn in row.resources
    ]
    entry["CloudTrailEvent"] = row.record
    return entry


class CloudTrailHandler:
    def __init__(
        self,
        audit: AuditService,
        identity: IdentityDirectory,
        auditor: Auditor | None,
        regions: Collection[str] | None = None,
    ) -> None:
        self.audit = audit
        self.identity = identity
        self.auditor = auditor
        # The Regions served (KEYLEDGER_REGIONS); None serves whatever a caller signs for.
        self.regions = frozenset(regions) if regions is not None else None

    async def answer(self, scope: dict[str, Any], body: bytes, send: Any) -> None:
        """Answer the request ``scope`` whose body (within its limit) was read already."""
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        target = next((v for k, v in headers if k.lower() == "x-amz-target"), "")
        name = target[len(TARGET_PREFIX) :]
        request_id = new_request_id()
        client = scope.get("client") or ("", 0)
        user_agent = next((v for k, v in headers if k.lower() == "user-agent"), "")
        query_string = scope.get("query_string", b"").decode("latin-1")
        try:
            if self.auditor is None:
                raise RuntimeError("no auditor")
            async with self.auditor.call(
                name,
                event_source=CLOUDTRAIL_SOURCE,
                request_id=request_id,
                headers=headers,
                query_string=query_string,
                source_ip=client[0],
                user_agent=user_agent,
                body=body,
            ) as audit:
                caller = await authenticate_request(
                    self.identity,
                    scope,
                    headers,
                    body,
                    request_id=request_id,
                    service="cloudtrail",
                    regions=self.regions,
                )
                audit.caller = caller
                if name != "LookupEvents":
                    raise UnknownOperationError("")
                check_lookup(body)
                params = audit.parameters = parse_request("cloudtrail", name, body)
                if params.get("EventCategory"):  # Insights events: KeyLedger has none
                    answer: dict[str, Any] = {"Events": []}
                else:
                    page = await self.audit.lookup_events(
                        caller,
                        lookup_filter(params),
                        params.get("MaxResults") or MAX_RESULTS,
                        params.get("NextToken"),
                    )
                    answer = {"Events": [event_entry(row) for row in page.rows]}
                    if page.next_token:
                        answer["NextToken"] = page.next_token
            await _respond(send, 200, orjson.dumps(answer), request_id)
        except Exception as error:
            await _fail(send, error, request_id)


async def _fail(send: Any, error: Exception, request_id: str) -> None:
    if isinstance(error, UnknownOperationError):
        code, status, message = "UnknownOperationException", 400, ""
    elif isinstance(error, SerializationError):
        code, status, message = "SerializationException", 400, error.message
    else:
        code, status, message = aws_error(error)  # CloudTrail's names for its own errors
        if code == "KMSInternalException":
            code = "InternalFailure"
        if not isinstance(error, DomainError):
            log.error("request %s failed: %s", request_id, type(error).__name__)
    body = orjson.dumps(error_document(code, message))
    await _respond(send, status, body, request_id)
