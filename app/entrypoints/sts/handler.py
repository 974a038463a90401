"""AWS STS at ``POST /`` over the query protocol (form-encoded ``Action=...&Version=...``).

``boto3.client("sts", endpoint_url=...)`` works unchanged. An adapter like the KMS one: it
authenticates (SigV4 scoped to ``sts``), validates against botocore's STS model, calls the
STS use case (app/usecases/sts.py) and writes XML; the call is audited like every other.
Any other action, and every IAM action (Version 2010-05-08), is answered InvalidAction in
the query protocol's XML error shape.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from app.aws.model import operation_model
from app.entrypoints.aws_json.shapes import RequestParser
from app.entrypoints.signed_requests import authenticate_request
from app.entrypoints.sts.wire import (
    IAM_NAMESPACE,
    IAM_VERSION,
    STS_NAMESPACE,
    answer_error,
    element,
    respond,
    result_xml,
)
from app.support.request_ids import new_request_id
from domain.audit import IAM_SOURCE, STS_SOURCE
from domain.errors import DomainError, UnknownOperationError, ValidationError

if TYPE_CHECKING:
    from app.auth.credentials import Caller, IdentityDirectory
    from app.usecases.auditing import Auditor
    from app.usecases.sts import SecurityTokenService

log = logging.getLogger("keyledger.sts")

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# AssumeRole members KeyLedger honours; any other (session policies, tags, MFA) is refused
# rather than ignored, since ignoring one would grant more than the caller asked.
ASSUME_ROLE_MEMBERS = frozenset(
    {"Action", "Version", "RoleArn", "RoleSessionName", "DurationSeconds", "ExternalId"}
)


def is_query_request(content_type: str) -> bool:
    return content_type.lower().startswith(FORM_CONTENT_TYPE)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class StsHandler:
    def __init__(
        self,
        sts: SecurityTokenService,
        identity: IdentityDirectory,
        auditor: Auditor | None,
        regions: Collection[str] | None = None,
    ) -> None:
        self.sts = sts
        self.identity = identity
        self.auditor = auditor
        self.regions = frozenset(regions) if regions is not None else None

    async def answer(self, scope: dict[str, Any], body: bytes, send: Any) -> None:
        """Answer the request ``scope`` whose body (within its limit) was read already."""
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        action, version = form.get("Action", ""), form.get("Version", "")
        iam = version == IAM_VERSION
        namespace = IAM_NAMESPACE if iam else STS_NAMESPACE
        request_id = new_request_id()
        client = scope.get("client") or ("", 0)
        user_agent = next((v for k, v in headers if k.lower() == "user-agent"), "")
        query_string = scope.get("query_string", b"").decode("latin-1")
        try:
            if self.auditor is None:
                raise RuntimeError("no auditor")
            async with self.auditor.call(
                action,
                event_source=IAM_SOURCE if iam else STS_SOURCE,
                request_id=request_id,
                headers=headers,
                query_string=query_string,
                source_ip=client[0],
                user_agent=user_agent,
            ) as audit:
                caller = await authenticate_request(
                    self.identity,
                    scope,
                    headers,
                    body,
                    request_id=request_id,
                    service="iam" if iam else "sts",
                    regions=None if iam else self.regions,  # IAM is global
                )
                audit.caller = caller
                if iam or action not in ("GetCallerIdentity", "AssumeRole"):
                    raise UnknownOperationError(
                        f"Could not find operation {action} for version {version}"
                    )
                params = audit.parameters = _parameters(action, form)
                answer = await self._call(caller, action, params, request_id)
            await respond(send, 200, answer, request_id)
        except Exception as error:  # every failure in the query protocol's XML shape
            if not isinstance(error, DomainError):
                log.error("request %s failed: %s", request_id, type(error).__name__)
            await answer_error(send, error, request_id, namespace=namespace)

    async def _call(
        self, caller: Caller, action: str, params: dict[str, Any], request_id: str
    ) -> bytes:
        if action == "GetCallerIdentity":
            found = await self.sts.get_caller_identity(caller)
            members = (
                element("Arn", found.arn)
                + element("UserId", found.user_id)
                + element("Account", found.account)
            )
            return result_xml(action, members, request_id)
        credentials = await self.sts.assume_role(
            caller,
            params["RoleArn"],
            params["RoleSessionName"],
            params.get("DurationSeconds"),
            params.get("ExternalId"),
        )
        session = credentials.session
        members = (
            "<Credentials>"
            + element("AccessKeyId", session.access_key_id)
            + element("SecretAccessKey", credentials.secret_access_key)
            + element("SessionToken", credentials.session_token)
            + element("Expiration", _iso(session.expires_at))
            + "</Credentials><AssumedRoleUser>"
            + element("AssumedRoleId", session.assumed_role_id)
            + element("Arn", session.arn)
            + "</AssumedRoleUser>"
        )
        return result_xml(action, members, request_id)


def _parameters(action: str, form: dict[str, str]) -> dict[str, Any]:
    """The operation's members from the form, validated against botocore's STS model."""
    if action == "AssumeRole":
        unsupported = sorted(set(form) - ASSUME_ROLE_MEMBERS)
        if unsupported:
            member = unsupported[0].split(".", 1)[0]
            raise ValidationError(f"KeyLedger does not support the AssumeRole member {member}.")
    members: dict[str, Any] = {k: v for k, v in form.items() if k not in ("Action", "Version")}
    duration = members.get("DurationSeconds")
    if isinstance(duration, str) and duration.lstrip("-").isdigit():
        members["DurationSeconds"] = int(duration)
    shape = operation_model("sts", action).input_shape
    if shape is None:
        return {}
    return RequestParser("sts").parse(shape, members)
