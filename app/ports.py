"""Ports: what the use cases (app.usecases) and authentication (app.auth) need of the world.

Small ``typing.Protocol``s, satisfied structurally by app.infrastructure (the writer, the
vault, the denial log, the clock, the read models over PostgreSQL) and by test doubles; and
the writer's command contract (``Command``, ``NeedsLoad``, ``CommandFailed``,
``CommandHooks``), which belongs to the use cases that write commands, not to the writer
that runs them. Nothing here imports app.infrastructure, psycopg or psycopg_pool.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from eventsourcing.domain import Aggregate

    from domain.keys import KeyMaterial
    from domain.xks import RequestMetadata, XksCiphertext, XksHealth, XksKeyMetadata
    from projections.audit_queries import AuditFilter, AuditRow, Position
    from projections.ledger_proofs import (
        CheckpointRow,
        ConsistencyProof,
        InclusionProof,
        SignerRow,
    )
    from projections.reports import Report
    from projections.time_travel import KeyAsOf

T = TypeVar("T")


# ==== the writer's command contract ==========================================================
class UnitOfWork(Protocol):
    """What one batch of commands sees: aggregates by id, loaded once and shared."""

    read: set[uuid.UUID]  # read from the store during this batch
    # Every aggregate handed out, with its pending event count then (for auditing).
    accessed: list[tuple[Aggregate, int]]
    after_commit: list[Callable[[], None]]  # called once the batch committed

    def get(self, aggregate_id: uuid.UUID, *, fresh: bool = False) -> Any | None:
        """The aggregate as of this batch, or None; raises NeedsLoad when it must be read.
        ``fresh`` re-reads newer events first."""
        ...

    def add(self, aggregate: Aggregate) -> None:
        """A newly created aggregate; saving it fails if its id is taken."""
        ...


Command = Callable[[UnitOfWork], T]


@dataclass(frozen=True)
class CommandFailed:
    """A command's outcome that must reach its caller as ``error`` (after a commit)."""

    error: Exception


class NeedsLoad(Exception):
    """A command asked for an aggregate the cache cannot answer without the database: the
    writer reads it, then runs the command again."""

    def __init__(self, aggregate_id: uuid.UUID) -> None:
        super().__init__(str(aggregate_id))
        self.aggregate_id = aggregate_id


class CommandHooks(Protocol):
    """What a command submitted with hooks is told besides running (app.usecases.auditing
    records failed calls this way)."""

    def after_failure(self, uow: UnitOfWork, error: Exception) -> None:
        """The command failed without appending anything; ``uow`` may take more events."""
        ...

    def failure_retry(self, error: Exception) -> Command[CommandFailed]:
        """The command to run instead when the batch runs again without this failed one:
        it answers ``error`` (CommandFailed) after its own effects commit."""
        ...


class CommandRunner(Protocol):
    """Runs commands on the single writer; answers after their events commit."""

    def run(self, command: Command[T]) -> Awaitable[T]: ...

    def run_sync(self, command: Command[T], timeout: float = 30.0) -> T:
        """From a thread that is not the writer's event loop."""
        ...


class HookedCommandRunner(Protocol):
    """The writer itself: runs a command with optional hooks (see CommandHooks)."""

    def run(self, command: Command[T], hooks: CommandHooks | None = None) -> Awaitable[T]: ...

    def run_sync(
        self, command: Command[T], timeout: float = 30.0, hooks: CommandHooks | None = None
    ) -> T: ...


class NeedsOutsideCall(Exception):
    """A command needs a call it must never make on the writer: to an HSM or an external
    key store (app.usecases.outside_calls). It raises this before changing anything; the
    writer answers it as it is (neither a failure to audit nor an error to log), and its
    caller makes the call off the writer, then runs the command again with the answer."""

    def __init__(self, call: Any) -> None:
        super().__init__(type(call).__name__)
        self.call = call


# Whether an error says the database did not answer (retry later: 503), as opposed to an
# answer it gave. Provided by app.infrastructure.postgres.database.is_unavailable.
Unavailability = Callable[[BaseException], bool]


# ==== the event history =======================================================================
class EventHistory(Protocol):
    """Committed events and aggregates, read straight from the store (in threads)."""

    def history(
        self, aggregate_id: uuid.UUID, *, gt: int | None = None, limit: int | None = None
    ) -> Iterable[Any]:
        """The aggregate's events after version ``gt``, oldest first, at most ``limit``."""
        ...

    def find(self, aggregate_id: uuid.UUID) -> Any | None:
        """The aggregate as committed now, or None when it has no events."""
        ...


# ==== the clock ===============================================================================
class Clock(Protocol):
    def now(self) -> datetime: ...


# ==== the vault ===============================================================================
class Vault(Protocol):
    """Key material and secrets, wrapped under per-key wrapping keys under the root key."""

    def new_key_id(self) -> uuid.UUID: ...

    def new_material(
        self,
        key_id: uuid.UUID,
        *,
        version: int,
        now: datetime,
        rotation_type: str | None,
        plaintext: bytes | None = None,
        material_id: str | None = None,
        imported: bool = False,
    ) -> KeyMaterial: ...

    def cipher(self, key_id: uuid.UUID, material: KeyMaterial) -> AESGCM | None: ...

    def unwrap_material(self, key_id: uuid.UUID, material: KeyMaterial) -> bytes | None: ...

    def shred_material(self, key_id: uuid.UUID, material: KeyMaterial, now: datetime) -> None: ...

    def shred(self, key_id: uuid.UUID, now: datetime) -> None: ...

    def seal_for_key(self, key_id: uuid.UUID, label: bytes, data: bytes) -> bytes: ...

    def open_for_key(self, key_id: uuid.UUID, label: bytes, wrapped: bytes) -> bytes | None: ...

    def wrap_secret(self, access_key_id: str, secret: str) -> bytes: ...

    def unwrap_secret(self, access_key_id: str, wrapped: bytes) -> str: ...

    def grant_token_mac(self, payload: bytes) -> bytes: ...

    def session_token_mac(self, payload: bytes) -> bytes: ...


# ==== CloudHSM clusters (custom key stores) ====================================================
@dataclass(frozen=True)
class HsmCluster:
    """A cluster a CloudHSM key store can use: here, a PKCS#11 token."""

    cluster_id: str
    token: str  # which token (module and label): clusters naming one token are related
    trust_anchor: str | None  # the certificate a store must present, when configured


class HsmClusters(Protocol):
    """The configured clusters (KEYLEDGER_CLOUDHSM_CLUSTERS) and the sessions to them."""

    def cluster(self, cluster_id: str) -> HsmCluster | None: ...

    def connect(self, store: uuid.UUID, cluster_id: str, pin: str) -> str | None:
        """Log in to the cluster's token with ``pin`` and keep the session for ``store``;
        None, or AWS's ConnectionErrorCode. Blocks: call it off the event loop."""
        ...

    def disconnect(self, store: uuid.UUID) -> None:
        """Close the store's session, if it has one. Blocks."""
        ...

    def close(self) -> None:
        """Close every session (the service stops). Blocks."""
        ...

    # Keys in the token. Each blocks: call them off the event loop. ``pin`` gives the
    # store's KeyStorePassword when this process has no session for the store yet (the
    # store was connected by another process): it is asked for only then.
    def generate_key(
        self, store: uuid.UUID, cluster_id: str, pin: Callable[[], str], label: str
    ) -> None:
        """A new AES-256 key in the token: sensitive, never extractable, labelled ``label``."""
        ...

    def destroy_key(
        self, store: uuid.UUID, cluster_id: str, pin: Callable[[], str], label: str
    ) -> bool:
        """Destroy the token's key ``label``; False when it was not there."""
        ...

    def encrypt(
        self,
        store: uuid.UUID,
        cluster_id: str,
        pin: Callable[[], str],
        label: str,
        nonce: bytes,
        plaintext: bytes,
        aad: bytes,
    ) -> bytes:
        """AES-GCM in the token: ciphertext and 16-byte tag."""
        ...

    def decrypt(
        self,
        store: uuid.UUID,
        cluster_id: str,
        pin: Callable[[], str],
        label: str,
        nonce: bytes,
        ciphertext: bytes,
        aad: bytes,
    ) -> bytes | None:
        """AES-GCM in the token; None when the tag does not verify."""
        ...

    def random(self, store: uuid.UUID, cluster_id: str, pin: Callable[[], str], size: int) -> bytes:
        """``size`` random bytes from the token's generator."""
        ...


# ==== XKS proxies (external key stores) ========================================================
@dataclass(frozen=True)
class XksProxyAddress:
    """An external key store's proxy as a call needs it: its endpoint, URI path, Region
    (the SigV4 scope) and credential, the secret still sealed by the vault. Two stores, or
    one store before and after an update, have different addresses."""

    store: uuid.UUID
    region: str
    endpoint: str  # XksProxyUriEndpoint, as the store has it
    uri_path: str
    access_key_id: str
    sealed_secret: bytes = field(repr=False)


class XksProxies(Protocol):
    """The XKS proxies of this process's external key stores, one client each (bounded).
    Each call waits for the proxy at most the configured timeout and raises
    domain.xks.XksProxyError for any failure. ``secret`` opens the store's
    RawSecretAccessKey; it is asked for only when a client must be made (it blocks)."""

    async def health(
        self,
        proxy: XksProxyAddress,
        secret: Callable[[], str],
        kms_operation: str,
        kms_request_id: str,
    ) -> XksHealth: ...

    async def check_health(
        self,
        proxy: XksProxyAddress,
        secret: Callable[[], str],
        kms_operation: str,
        kms_request_id: str,
    ) -> XksHealth:
        """GetHealthStatus at settings that are not (or not yet) the store's: with a client
        of its own, closed after the call; the store's own client is left as it was
        (Create/UpdateCustomKeyStore check a proxy before they record its settings)."""
        ...

    async def get_key_metadata(
        self,
        proxy: XksProxyAddress,
        secret: Callable[[], str],
        external_key_id: str,
        metadata: RequestMetadata,
    ) -> XksKeyMetadata: ...

    async def encrypt(
        self,
        proxy: XksProxyAddress,
        secret: Callable[[], str],
        external_key_id: str,
        metadata: RequestMetadata,
        plaintext: bytes,
        aad: bytes,
    ) -> XksCiphertext:
        """AES-GCM under the external key, the answer's integrity value checked."""
        ...

    async def decrypt(
        self,
        proxy: XksProxyAddress,
        secret: Callable[[], str],
        external_key_id: str,
        metadata: RequestMetadata,
        ciphertext: XksCiphertext,
        aad: bytes,
    ) -> bytes: ...

    async def forget(self, store: uuid.UUID) -> None:
        """Close the store's clients (it was disconnected)."""
        ...

    def close(self) -> None:
        """Close every client (the service stops). Blocks."""
        ...


# ==== the denial log ==========================================================================
@dataclass(frozen=True)
class DenialRecord:
    denied_at: datetime
    request_id: str
    principal_arn: str
    account_id: str
    action: str  # "kms:Decrypt"
    resource_arn: str  # the key ARN, or "*"
    error_code: str  # "AccessDeniedException"
    message: str
    source_ip: str = ""
    access_key_id: str = ""
    via_service: str = ""

    def row(self) -> tuple[Any, ...]:
        return (
            self.denied_at,
            self.request_id,
            self.principal_arn,
            self.account_id,
            self.action,
            self.resource_arn,
            self.error_code,
            self.message,
            self.source_ip,
            self.access_key_id,
            self.via_service,
        )


class DenialLog(Protocol):
    def record(self, record: DenialRecord) -> None:
        """Queue one record; returns at once."""
        ...

    def query(
        self,
        *,
        principal_arn: str | None = None,
        resource_arn: str | None = None,
        account_id: str | None = None,
        limit: int = 100,
    ) -> list[DenialRecord]: ...


# ==== read models =============================================================================
class KeyDirectory(Protocol):
    """The key directory read model (projections/key_directory.py): what the list
    operations and the scheduler read. Synchronous: for threads."""

    def wait_for_current(self) -> None:
        """Wait until the read model includes every event committed so far."""
        ...

    def list_keys(
        self, account_id: str, region: str, after: str | None, limit: int
    ) -> list[tuple[str, str]]: ...

    def list_aliases(
        self,
        account_id: str,
        region: str,
        key_id: str | None,
        after: str | None,
        limit: int,
    ) -> list[tuple[str, str, datetime, datetime]]: ...

    def keys_due(self, now: datetime) -> list[tuple[uuid.UUID, str]]: ...

    def retirable_grants(self, principal: str, after: Any, limit: int) -> list[Any]:
        """Rows of grants whose retiring principal is ``principal``, in (key, grant) order."""
        ...


class AuditStore(Protocol):
    """The audit trail's read models (projections/audit_*.py, reports, time travel).
    Synchronous: for threads."""

    def wait_for_current(self, timeout: float) -> Any: ...

    def find_events(
        self, query: AuditFilter, limit: int, after: Position | None = None
    ) -> list[AuditRow]: ...

    def iter_events(
        self, query: AuditFilter, *, oldest_first: bool = False
    ) -> Iterator[AuditRow]: ...

    def key_as_of(self, key_id: uuid.UUID, at: datetime) -> KeyAsOf | None: ...

    def last_usage(self, key_id: uuid.UUID) -> Any:
        """(operation, used at, event id, request id) of the key's last use, or None."""
        ...

    def who_can_decrypt_as_of(
        self, key_id: uuid.UUID, at: datetime, account: str | None, now: datetime
    ) -> Report | None:
        """The who-can-decrypt report under the key policy and grants the key had at
        ``at`` (None: the key did not exist then, or not in ``account``)."""
        ...

    def usage_by_hour(
        self, key_arn: str, start: datetime, end: datetime, account: str | None
    ) -> list[tuple[datetime, str, int, int]]:
        """(hour, operation, requests, errors) of the key's calls in [start, end), oldest
        first; only a key of ``account`` when one is given."""
        ...

    def report(
        self,
        name: str,
        account: str | None,
        now: datetime,
        *,
        days: int = 90,
        key: str | None = None,
        month: str | None = None,
        cryptoperiods: Mapping[str, int] | None = None,
    ) -> Report: ...


# The ids of the active access keys (an index the audit views keep), read in a thread.
ActiveAccessKeys = Callable[[], Iterable[str]]


class LedgerEvidenceStore(Protocol):
    """The evidence's read model (projections.ledger_proofs.LedgerProofs). Synchronous:
    for threads."""

    def checkpoint(self, size: int | None = None) -> CheckpointRow: ...

    def checkpoints(self, after_size: int = -1, limit: int = 100) -> list[CheckpointRow]: ...

    def signers(self) -> list[SignerRow]: ...

    def inclusion_proof(
        self,
        *,
        position: int | None = None,
        event_id: uuid.UUID | None = None,
        size: int | None = None,
        account: str | None = None,
    ) -> InclusionProof: ...

    def consistency_proof(self, from_size: int, to_size: int | None = None) -> ConsistencyProof: ...


# ==== root-key custody ========================================================================
class RootKeyRewrap(Protocol):
    """The vault's side of a root-key rotation (app/infrastructure/vault.py)."""

    @property
    def root_key_id(self) -> str: ...

    @property
    def previous_root_key_ids(self) -> tuple[str, ...]: ...

    def rows_to_rewrap(self) -> int: ...

    def rewrap_batch(self, limit: int, *, wait: bool = False) -> int:
        """Re-wrap up to ``limit`` rows; rows another transaction holds are skipped, or
        with ``wait`` waited for (a concurrent shred of the same row)."""
        ...

    def retire_previous_root_keys(self) -> list[str]:
        """Destroy the previous root keys the provider keeps and no row needs any more
        (a Shamir seal's); their ids."""
        ...
