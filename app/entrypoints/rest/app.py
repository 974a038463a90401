"""The REST API under /v1 (FastAPI; OpenAPI at /docs), over the same KeyService as the AWS protocol.

An adapter: it authenticates each request with SigV4 (service ``kms``, exactly as the AWS
protocol does), turns the request into plain values, calls one use case, and shapes the
answer. It decides nothing. Every error is ``{"__type": <AWS code>, "message": ...}`` with
the HTTP status that fits its meaning (``wire_errors.rest_status``); under /v1 a caller that
fails authentication learns nothing else about its request.

Keys are named in paths by key id, key ARN, alias name or alias ARN. ARNs and alias names
contain ``/``, so key routes use a ``path`` parameter and the plain ``/v1/keys/{key_id}``
routes are registered after every sub-resource route.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.bootstrap import Runtime
from app.entrypoints.rest.access import router as access_router
from app.entrypoints.rest.asymmetric import router as key_spec_router
from app.entrypoints.rest.audit import router as audit_router
from app.entrypoints.rest.call_records import CLOUDTRAIL_OPERATIONS, OPERATIONS
from app.entrypoints.rest.custom_key_stores import router as custom_key_stores_router
from app.entrypoints.rest.deps import (
    API_PREFIX,
    ERROR_RESPONSES,
    KEY,
    CallerDep,
    KeyId,
    LedgerRoute,
    Marker,
    ServiceDep,
    error_response,
)
from app.entrypoints.rest.ledger import router as ledger_router
from app.entrypoints.rest.schemas import (
    MAX_KEY_ID,
    AliasCreate,
    AliasList,
    AliasPublic,
    AliasUpdate,
    DataKeyRequest,
    DataKeyResult,
    DecryptRequest,
    DecryptResult,
    DeletionCancelled,
    DeletionPublic,
    DeletionSchedule,
    EncryptRequest,
    EncryptResult,
    EventList,
    EventPublic,
    KeyCreate,
    KeyEntryPublic,
    KeyList,
    KeyPublic,
    KeyUpdate,
    PolicyPublic,
    PolicyUpdate,
    RandomRequest,
    RandomResult,
    ReEncryptRequest,
    ReEncryptResult,
    RotatedPublic,
    RotationList,
    RotationPublic,
    RotationSettings,
    RotationStatusPublic,
    TagList,
    TagUpdate,
)
from app.entrypoints.rest.sys import signed as sys_signed_router
from app.entrypoints.rest.sys import unsigned as sys_unsigned_router
from app.usecases.key_history import OMITTED, public_value
from app.usecases.keys import CreateKeyRequest
from domain.audit import CLOUDTRAIL_SOURCE, KMS_SOURCE
from projections.batched import DeadLetter

log = logging.getLogger("keyledger.rest")

DESCRIPTION = """\
KeyLedger's REST API: the operations of the AWS KMS API as resources.

**Authentication**: sign every `/v1` request with AWS Signature Version 4 (service `kms`,
any region this deployment serves) with an access key of this deployment, exactly as an AWS
SDK signs KMS requests. Unsigned or mis-signed requests are answered 401.

**Errors**: `{"__type": "<AWS error code>", "message": "..."}`: 400 invalid input, 401 not
authenticated, 403 not allowed, 404 no such key or alias, 409 the key's state (disabled,
pending deletion) or an existing name forbids it, 412 a dry run would have succeeded.

**Binary data** (plaintext, ciphertext, random bytes) is standard base64.
"""


def recorded_operation(app: FastAPI, scope: dict[str, Any]) -> tuple[str, str]:
    """(event source, event name) of the AWS operation a request's route performs, known
    from its method and path alone: for a request refused before it is read
    (app.entrypoints.server.asgi). ("kms.amazonaws.com", "") when the route performs none."""
    for route in app.router.routes:
        if isinstance(route, APIRoute) and route.matches(scope)[0] is Match.FULL:
            if route.name in CLOUDTRAIL_OPERATIONS:
                return CLOUDTRAIL_SOURCE, CLOUDTRAIL_OPERATIONS[route.name]
            return KMS_SOURCE, OPERATIONS.get(route.name, "")
    return KMS_SOURCE, ""


NO_CONTENT: dict[str, Any] = {"status_code": 204, "response_class": Response}
router = APIRouter(prefix=API_PREFIX, route_class=LedgerRoute, responses=ERROR_RESPONSES)


# ==== keys (the collection) ===============================================================
@router.post("/keys", status_code=201, tags=["keys"])
async def create_key(body: KeyCreate, caller: CallerDep, service: ServiceDep) -> KeyPublic:
    request = CreateKeyRequest(
        description=body.description,
        key_usage=body.key_usage,
        key_spec=body.key_spec,
        origin=body.origin,
        policy=body.policy,
        bypass_policy_lockout_safety_check=body.bypass_policy_lockout_safety_check,
        tags=tuple(body.tags.items()),
    )
    key = await service.keys.create_key(caller, request)
    return KeyPublic.model_validate(key, from_attributes=True)


@router.get("/keys", tags=["keys"])
async def list_keys(
    caller: CallerDep,
    service: ServiceDep,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    marker: Marker = None,
) -> KeyList:
    page = await service.keys.list_keys(caller, limit, marker)
    keys = [KeyEntryPublic(key_id=k.key_id, key_arn=k.key_arn) for k in page.items]
    return KeyList(keys=keys, next_marker=page.next_marker, truncated=page.truncated)


# ==== aliases ==============================================================================
@router.get("/aliases", tags=["aliases"])
async def list_aliases(
    caller: CallerDep,
    service: ServiceDep,
    key_id: Annotated[str | None, Query(min_length=1, max_length=MAX_KEY_ID)] = None,
    limit: Annotated[int | None, Query(ge=1, le=100)] = None,
    marker: Marker = None,
) -> AliasList:
    page = await service.keys.list_aliases(caller, key_id, limit, marker)
    aliases = [AliasPublic.model_validate(a, from_attributes=True) for a in page.items]
    return AliasList(aliases=aliases, next_marker=page.next_marker, truncated=page.truncated)


@router.post("/aliases", **NO_CONTENT, tags=["aliases"])
async def create_alias(body: AliasCreate, caller: CallerDep, service: ServiceDep) -> None:
    await service.keys.create_alias(caller, body.alias_name, body.target_key_id)


@router.put("/aliases/{alias_name:path}", **NO_CONTENT, tags=["aliases"])
async def update_alias(
    alias_name: str, body: AliasUpdate, caller: CallerDep, service: ServiceDep
) -> None:
    """Point an existing alias at another key."""
    await service.keys.update_alias(caller, alias_name, body.target_key_id)


@router.delete("/aliases/{alias_name:path}", **NO_CONTENT, tags=["aliases"])
async def delete_alias(alias_name: str, caller: CallerDep, service: ServiceDep) -> None:
    await service.keys.delete_alias(caller, alias_name)


# ==== cryptography that finds its key in the ciphertext ===================================
@router.post("/decrypt", tags=["cryptography"])
async def decrypt(body: DecryptRequest, caller: CallerDep, service: ServiceDep) -> DecryptResult:
    result = await service.crypto.decrypt(
        caller,
        body.ciphertext,
        body.key_id,
        body.encryption_context,
        body.encryption_algorithm,
        body.dry_run,
    )
    return DecryptResult(
        plaintext=result.plaintext,
        key_arn=result.key_arn,
        encryption_algorithm=result.algorithm,
        material_id=result.material_id,
    )


@router.post("/re-encrypt", tags=["cryptography"])
async def re_encrypt(
    body: ReEncryptRequest, caller: CallerDep, service: ServiceDep
) -> ReEncryptResult:
    result = await service.crypto.re_encrypt(
        caller,
        body.ciphertext,
        source_key_id=body.source_key_id,
        destination_key_id=body.destination_key_id,
        source_context=body.source_encryption_context,
        destination_context=body.destination_encryption_context,
        source_algorithm=body.source_encryption_algorithm,
        destination_algorithm=body.destination_encryption_algorithm,
        dry_run=body.dry_run,
    )
    return ReEncryptResult(
        ciphertext=result.ciphertext,
        source_key_arn=result.source_key_arn,
        key_arn=result.key_arn,
        source_encryption_algorithm=result.source_algorithm,
        destination_encryption_algorithm=result.destination_algorithm,
        source_material_id=result.source_material_id,
        destination_material_id=result.destination_material_id,
    )


@router.post("/random", tags=["cryptography"])
async def generate_random(
    body: RandomRequest, caller: CallerDep, service: ServiceDep
) -> RandomResult:
    return RandomResult(
        random_bytes=await service.crypto.generate_random(caller, body.number_of_bytes)
    )


# ==== a key's sub-resources ================================================================
# Registered before /keys/{key_id:path}/deletion, whose key_id could swallow "K/tags".
@router.delete(KEY + "/tags/{tag_key}", **NO_CONTENT, tags=["tags"])
async def untag_key(key_id: KeyId, tag_key: str, caller: CallerDep, service: ServiceDep) -> None:
    """Remove one tag (removing an absent tag is not an error)."""
    await service.keys.untag_resource(caller, key_id, [tag_key])


@router.delete(KEY + "/tags", **NO_CONTENT, tags=["tags"])
async def untag_key_many(
    key_id: KeyId,
    caller: CallerDep,
    service: ServiceDep,
    tag_key: Annotated[list[str], Query(min_length=1, description="Repeat to remove several.")],
) -> None:
    """Remove several tags: `?tag_key=a&tag_key=b` (for keys containing `/`, too)."""
    await service.keys.untag_resource(caller, key_id, tag_key)


@router.get(KEY + "/tags", tags=["tags"])
async def list_tags(
    key_id: KeyId,
    caller: CallerDep,
    service: ServiceDep,
    limit: Annotated[int | None, Query(ge=1, le=50)] = None,
    marker: Marker = None,
) -> TagList:
    page = await service.keys.list_resource_tags(caller, key_id, limit, marker)
    return TagList(tags=dict(page.items), next_marker=page.next_marker, truncated=page.truncated)


@router.put(KEY + "/tags", **NO_CONTENT, tags=["tags"])
async def tag_key(key_id: KeyId, body: TagUpdate, caller: CallerDep, service: ServiceDep) -> None:
    """Add the given tags, overwriting the values of keys already present."""
    await service.keys.tag_resource(caller, key_id, tuple(body.tags.items()))


@router.get(KEY + "/policy", tags=["policy"])
async def get_policy(
    key_id: KeyId,
    caller: CallerDep,
    service: ServiceDep,
    policy_name: Annotated[str | None, Query(max_length=128)] = None,
) -> PolicyPublic:
    policy = await service.keys.get_key_policy(caller, key_id, policy_name)
    return PolicyPublic(policy_name=policy_name or "default", policy=policy)


@router.put(KEY + "/policy", **NO_CONTENT, tags=["policy"])
async def put_policy(
    key_id: KeyId, body: PolicyUpdate, caller: CallerDep, service: ServiceDep
) -> None:
    await service.keys.put_key_policy(
        caller,
        key_id,
        body.policy_name,
        body.policy,
        bypass_lockout=body.bypass_policy_lockout_safety_check,
    )


@router.get(KEY + "/rotation", tags=["rotation"])
async def get_rotation(
    key_id: KeyId, caller: CallerDep, service: ServiceDep
) -> RotationStatusPublic:
    status = await service.keys.get_key_rotation_status(caller, key_id)
    return RotationStatusPublic.model_validate(status, from_attributes=True)


@router.put(KEY + "/rotation", **NO_CONTENT, tags=["rotation"])
async def enable_rotation(
    key_id: KeyId, caller: CallerDep, service: ServiceDep, body: RotationSettings | None = None
) -> None:
    """Turn automatic rotation on (or change its period)."""
    period = body.rotation_period_days if body else None
    await service.keys.enable_key_rotation(caller, key_id, period)


@router.delete(KEY + "/rotation", **NO_CONTENT, tags=["rotation"])
async def disable_rotation(key_id: KeyId, caller: CallerDep, service: ServiceDep) -> None:
    await service.keys.disable_key_rotation(caller, key_id)


@router.post(KEY + "/rotations", tags=["rotation"])
async def rotate_now(key_id: KeyId, caller: CallerDep, service: ServiceDep) -> RotatedPublic:
    """Rotate the key's material now; earlier ciphertexts stay decryptable."""
    rotated = await service.keys.rotate_key_on_demand(caller, key_id)
    return RotatedPublic(key_id=rotated.key_id)


@router.get(KEY + "/rotations", tags=["rotation"])
async def list_rotations(
    key_id: KeyId,
    caller: CallerDep,
    service: ServiceDep,
    include_key_material: Annotated[
        str | None, Query(description="ALL_KEY_MATERIAL to include the original material.")
    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    marker: Marker = None,
) -> RotationList:
    page = await service.keys.list_key_rotations(
        caller, key_id, include_key_material, limit, marker
    )
    rotations = [RotationPublic.model_validate(r, from_attributes=True) for r in page.items]
    return RotationList(rotations=rotations, next_marker=page.next_marker, truncated=page.truncated)


@router.post(KEY + "/encrypt", tags=["cryptography"])
async def encrypt(
    key_id: KeyId, body: EncryptRequest, caller: CallerDep, service: ServiceDep
) -> EncryptResult:
    result = await service.crypto.encrypt(
        caller,
        key_id,
        body.plaintext,
        body.encryption_context,
        body.encryption_algorithm,
        body.dry_run,
    )
    return EncryptResult(
        ciphertext=result.ciphertext,
        key_arn=result.key_arn,
        encryption_algorithm=result.algorithm,
        material_id=result.material_id,
    )


@router.post(KEY + "/data-keys", tags=["cryptography"])
async def generate_data_key(
    key_id: KeyId, body: DataKeyRequest, caller: CallerDep, service: ServiceDep
) -> DataKeyResult:
    """A data key, encrypted under the key (and in plaintext unless with_plaintext is false)."""
    result = await service.crypto.generate_data_key(
        caller,
        key_id,
        number_of_bytes=body.number_of_bytes,
        key_spec=body.key_spec,
        encryption_context=body.encryption_context,
        with_plaintext=body.with_plaintext,
        dry_run=body.dry_run,
    )
    return DataKeyResult(
        ciphertext=result.ciphertext,
        plaintext=result.plaintext,
        key_arn=result.key_arn,
        material_id=result.material_id,
    )


MAX_EVENT_VERSION = 2**63 - 1  # a version is a PostgreSQL bigint: anything above is no token


@router.get(KEY + "/events", tags=["history"])
async def key_events(
    key_id: KeyId,
    caller: CallerDep,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after_version: Annotated[int, Query(ge=0, le=MAX_EVENT_VERSION)] = 0,
) -> EventList:
    """The key's recorded history, oldest first; key material shows only its version and id."""
    # One more than the page tells whether another follows; the store reads just these.
    later = await service.keys.key_history(
        caller, key_id, after_version=after_version, limit=limit + 1
    )
    page, truncated = later[:limit], len(later) > limit
    return EventList(
        events=[event_public(event) for event in page],
        next_after_version=page[-1].originator_version if truncated else None,
        truncated=truncated,
    )


@router.post(KEY + "/enable", **NO_CONTENT, tags=["keys"])
async def enable_key(key_id: KeyId, caller: CallerDep, service: ServiceDep) -> None:
    await service.keys.enable_key(caller, key_id)


@router.post(KEY + "/disable", **NO_CONTENT, tags=["keys"])
async def disable_key(key_id: KeyId, caller: CallerDep, service: ServiceDep) -> None:
    await service.keys.disable_key(caller, key_id)


@router.post(KEY + "/deletion", tags=["keys"])
async def schedule_deletion(
    key_id: KeyId, caller: CallerDep, service: ServiceDep, body: DeletionSchedule | None = None
) -> DeletionPublic:
    """Schedule the key's deletion after a waiting period; the key is unusable meanwhile."""
    days = body.pending_window_days if body else None
    result = await service.keys.schedule_key_deletion(caller, key_id, days)
    return DeletionPublic.model_validate(result, from_attributes=True)


@router.delete(KEY + "/deletion", tags=["keys"])
async def cancel_deletion(
    key_id: KeyId, caller: CallerDep, service: ServiceDep
) -> DeletionCancelled:
    """Cancel a scheduled deletion; the key comes back disabled."""
    return DeletionCancelled(key_arn=await service.keys.cancel_key_deletion(caller, key_id))


# Registered last: {key_id:path} would otherwise swallow every sub-resource path above.
@router.get(KEY, tags=["keys"])
async def describe_key(key_id: KeyId, caller: CallerDep, service: ServiceDep) -> KeyPublic:
    key = await service.keys.describe_key(caller, key_id)
    return KeyPublic.model_validate(key, from_attributes=True)


@router.patch(KEY, **NO_CONTENT, tags=["keys"])
async def update_key(
    key_id: KeyId, body: KeyUpdate, caller: CallerDep, service: ServiceDep
) -> None:
    await service.keys.update_key_description(caller, key_id, body.description)


# ==== history rendering ====================================================================
_ENVELOPE = frozenset({"originator_id", "originator_version", "originator_topic", "timestamp"})


def event_public(event: Any) -> EventPublic:
    """A domain event as the API shows it: never any key material, never any bytes."""
    fields = {name: public_value(value) for name, value in vars(event).items()}
    details = {
        name: value
        for name, value in fields.items()
        if name not in _ENVELOPE and name != "actor" and value is not OMITTED
    }
    actor = fields.get("actor")
    return EventPublic(
        version=event.originator_version,
        type=type(event).__name__,
        timestamp=event.timestamp,
        actor=actor if isinstance(actor, dict) else {},
        details=details,
    )


def _without_422(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI documents 422 for invalid input; this API answers those 400 (ErrorBody)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for operations in schema["paths"].values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema or {}

    return openapi


def create_rest_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="KeyLedger", version="0.1.0", description=DESCRIPTION)
    app.state.runtime = runtime

    app.include_router(key_spec_router)  # first: `router` ends in a /keys/{key_id} catch-all
    app.include_router(router)
    app.include_router(custom_key_stores_router)
    app.include_router(access_router)
    app.include_router(audit_router)
    app.include_router(ledger_router)
    app.include_router(sys_unsigned_router)
    app.include_router(sys_signed_router)

    async def http_error(request: Request, error: Exception) -> Response:
        return await error_response(request, error)

    # Unknown paths and methods: the router answers before any route runs.
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.openapi = _without_422(app)  # type: ignore[method-assign]

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], response_model=None)
    async def readyz() -> dict[str, Any] | JSONResponse:
        """Ready when the event store answers in time (readiness_timeout_seconds); else
        503, with a member per failed check (``database``: why) beside ``status``. A view
        that set events aside still serves (200), but says so: ``degraded``, with the
        views' gaps under ``projections``; so does a ledger whose verification failed
        (``ledger``: what failed)."""
        sealed = runtime.seal_status()
        if sealed is not None and sealed.sealed:  # alive, but serves nothing until unsealed
            return JSONResponse(
                {
                    "status": "sealed",
                    "unseal_progress": sealed.progress,
                    "threshold": sealed.threshold,
                },
                status_code=503,
            )
        problem = await runtime.database_problem()
        if problem is not None:
            log.warning("not ready: %s", problem)
            return JSONResponse({"status": "unavailable", "database": problem}, status_code=503)
        gaps = {
            name: gap for name, gap in (await runtime.projection_gaps() or {}).items() if gap.count
        }
        answer: dict[str, Any] = {"status": "ready"}
        if gaps:
            answer["status"] = "degraded"
            answer["projections"] = {
                name: {
                    "events_set_aside": gap.count,
                    "newest": [_set_aside(letter) for letter in gap.newest],
                }
                for name, gap in gaps.items()
            }
        ledger = runtime.ledger_status()
        if ledger is not None and (ledger.failure or ledger.signer_problem):
            # Tampering found: still serving (the keys are not the ledger's evidence),
            # but every probe says so (docs/verifiable-ledger.md).
            answer["status"] = "degraded"
            answer["ledger"] = {
                "verification": "failed",
                "failure": ledger.failure or ledger.signer_problem,
                "checkpoint_size": ledger.checkpoint_size,
                "checked_at": ledger.checked_at.isoformat() if ledger.checked_at else None,
            }
        return answer

    return app


def _set_aside(letter: DeadLetter) -> dict[str, Any]:
    return {
        "notification_id": letter.notification_id,
        "aggregate_id": str(letter.originator_id),
        "version": letter.originator_version,
        "topic": letter.topic,
        "error_type": letter.error_type,
        "failed_at": letter.failed_at.isoformat(),
    }
