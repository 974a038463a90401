"""REST routes (/v1/ledger) for the verifiable ledger's evidence: signed checkpoints, the
signers' public keys, and RFC 9162 inclusion and consistency proofs (docs/ledger-proofs.md).

Thin, like app/entrypoints/rest/audit.py: each route turns its query into plain values,
calls one use case of app/usecases/ledger_evidence.py (which decides who may ask) and
answers its document. Hashes are standard, padded base64 (RFC 4648 §4).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from app.bootstrap import Runtime
from app.entrypoints.rest.deps import ERROR_RESPONSES, CallerDep, LedgerRoute
from app.usecases.ledger_evidence import LedgerEvidence, checkpoint_document, signer_document
from domain.errors import InternalError
from projections.ledger_proofs import MAX_PAGE, MAX_SIZE

router = APIRouter(
    prefix="/v1/ledger", route_class=LedgerRoute, responses=ERROR_RESPONSES, tags=["ledger"]
)
NOTE_MEDIA_TYPE = "text/plain; charset=utf-8"
B64 = "standard padded base64 (RFC 4648 §4) of a 32-byte SHA-256 hash"


async def ledger_evidence(request: Request) -> LedgerEvidence:
    runtime: Runtime = request.app.state.runtime
    evidence = getattr(runtime, "ledger_evidence", None)
    if evidence is None:
        raise InternalError("the ledger's evidence is not available")
    return evidence


EvidenceDep = Annotated[LedgerEvidence, Depends(ledger_evidence)]
Size = Annotated[
    int | None,
    Query(ge=0, le=MAX_SIZE, description="A checkpoint's tree size (default: the newest)."),
]


# ==== answers =============================================================================
class CheckpointPublic(BaseModel):
    """A signed checkpoint (c2sp.org/tlog-checkpoint): the tree head the service signed."""

    size: int = Field(description="Tree size: the number of events (leaves) it covers.")
    root: str = Field(description=f"The RFC 9162 root hash at that size, {B64}.")
    note: str = Field(
        description="The signed note exactly as signed: origin, size, root lines, a blank"
        " line, then one signature line per signer. Verify it with the published key."
    )
    signed_at: str = Field(description="When it was signed (ISO 8601, UTC).")


class CheckpointPage(BaseModel):
    checkpoints: list[CheckpointPublic] = Field(description="Smallest size first.")
    next_after: int | None = Field(
        description="Pass as `after` for the next page; null when this page is the last."
    )


class SignerPublic(BaseModel):
    """A key that signs (or signed) checkpoints; pin its `vkey` to verify notes."""

    key_name: str = Field(description="The key name in signature lines (the log's origin).")
    key_id: str = Field(description="The 4-byte key ID, hex.")
    public_key: str = Field(description="The raw 32-byte Ed25519 public key, base64.")
    vkey: str = Field(
        description="The verifier key, `<name>+<hex key ID>+<base64(0x01 || public key)>`"
        " (golang.org/x/mod/sumdb/note's format)."
    )
    created_at: str = Field(description="When it was published (ISO 8601, UTC).")


class SignerList(BaseModel):
    signers: list[SignerPublic]


class LeafPublic(BaseModel):
    """The fields of a leaf (docs/verifiable-ledger.md): the leaf is position (uint64) ||
    originator id (16 bytes) || version (uint64) || topic length (uint32) || topic (UTF-8)
    || state SHA-256, big-endian; its hash is SHA-256(0x00 || leaf)."""

    position: int = Field(description="The event's notification id.")
    originator_id: str = Field(description="The aggregate's UUID (a key id, for keys).")
    version: int = Field(description="The event's version in its aggregate.")
    topic: str = Field(description="The event's type, e.g. `domain.keys:Key.Used`.")
    state_sha256: str = Field(description=f"SHA-256 of the stored state bytes, {B64}.")


class InclusionProofPublic(BaseModel):
    """RFC 9162 §2.1.3: the audit path from one event's leaf to a signed checkpoint's root."""

    type: str = Field(description="`inclusion`.")
    event_id: str | None = Field(description="The eventID asked for, if asked by one.")
    position: int = Field(description="The event's position (notification id).")
    leaf_index: int = Field(description="The leaf's index in the tree (0-based).")
    leaf: LeafPublic
    leaf_hash: str = Field(description=f"SHA-256(0x00 || leaf), {B64}.")
    tree_size: int = Field(description="The checkpoint's size.")
    proof: list[str] = Field(description=f"The audit path, leaf upwards; each {B64}.")
    checkpoint: CheckpointPublic


class ConsistencyProofPublic(BaseModel):
    """RFC 9162 §2.1.4: the tree at `from_size` is a prefix of the checkpoint at `to_size`."""

    type: str = Field(description="`consistency`.")
    from_size: int
    to_size: int
    from_root: str = Field(
        description=f"The root at from_size, {B64}; trust it only as a signed checkpoint's"
        " (from_checkpoint) or one you kept."
    )
    to_root: str = Field(description=f"The root of the checkpoint at to_size, {B64}.")
    proof: list[str] = Field(description=f"The consistency proof; each {B64}.")
    from_checkpoint: CheckpointPublic | None = Field(
        description="The checkpoint of size from_size, if one was signed at that size."
    )
    to_checkpoint: CheckpointPublic


# ==== routes ==============================================================================
def _wants_text(request: Request) -> bool:
    """Accept names text/plain and not JSON (q-values are not weighed)."""
    accepted = {
        part.split(";")[0].strip().lower() for part in request.headers.get("accept", "").split(",")
    }
    return "text/plain" in accepted and "application/json" not in accepted


NOTE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}}
}


@router.get("/checkpoint", response_model=CheckpointPublic, responses=NOTE_RESPONSE)
async def get_checkpoint(
    request: Request, caller: CallerDep, evidence: EvidenceDep, size: Size = None
) -> Any:
    """A signed checkpoint: the newest, or the one of tree size `size`. With
    `Accept: text/plain`, the signed note alone."""
    row = await evidence.checkpoint(caller, size)
    if _wants_text(request):
        return Response(row.note, media_type=NOTE_MEDIA_TYPE)
    return CheckpointPublic.model_validate(checkpoint_document(row))


@router.get(
    "/checkpoint.note",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def get_checkpoint_note(caller: CallerDep, evidence: EvidenceDep, size: Size = None) -> Any:
    """The signed note of a checkpoint (the newest, or of tree size `size`), as text."""
    row = await evidence.checkpoint(caller, size)
    return Response(row.note, media_type=NOTE_MEDIA_TYPE)


@router.get("/checkpoints")
async def list_checkpoints(
    caller: CallerDep,
    evidence: EvidenceDep,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_SIZE, description="Only sizes larger than this.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> CheckpointPage:
    """Every signed checkpoint, smallest size first, a page at a time."""
    rows = await evidence.checkpoints(caller, after, limit)
    return CheckpointPage(
        checkpoints=[CheckpointPublic.model_validate(checkpoint_document(r)) for r in rows],
        next_after=rows[-1].size if len(rows) == limit else None,
    )


@router.get("/public-key")
async def get_public_keys(caller: CallerDep, evidence: EvidenceDep) -> SignerList:
    """The published checkpoint-signing keys (every key that ever signed), to pin."""
    rows = await evidence.signers(caller)
    return SignerList(signers=[SignerPublic.model_validate(signer_document(r)) for r in rows])


@router.get("/proofs/inclusion")
async def prove_inclusion(
    caller: CallerDep,
    evidence: EvidenceDep,
    position: Annotated[
        int | None, Query(ge=0, le=MAX_SIZE, description="The event's notification id.")
    ] = None,
    event_id: Annotated[
        uuid.UUID | None, Query(description="A CloudTrail record's eventID.")
    ] = None,
    size: Size = None,
) -> InclusionProofPublic:
    """The inclusion proof of one event, named by `position` or by a record's `event_id`
    (exactly one), under the checkpoint of tree size `size` (default: the newest)."""
    document = await evidence.inclusion_proof(
        caller, position=position, event_id=event_id, size=size
    )
    return InclusionProofPublic.model_validate(document)


@router.get("/proofs/consistency")
async def prove_consistency(
    caller: CallerDep,
    evidence: EvidenceDep,
    from_size: Annotated[
        int, Query(alias="from", ge=1, le=MAX_SIZE, description="The older tree size.")
    ],
    to_size: Annotated[
        int | None,
        Query(alias="to", ge=1, le=MAX_SIZE, description="A checkpoint's size (default: newest)."),
    ] = None,
) -> ConsistencyProofPublic:
    """The consistency proof from the tree of size `from` to the checkpoint of size `to`."""
    document = await evidence.consistency_proof(caller, from_size, to_size)
    return ConsistencyProofPublic.model_validate(document)
