"""Wiring: builds the service's parts from settings, starts and stops them in order."""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from app import ports
from app.auth.credentials import IdentityDirectory
from app.auth.emulator import EmulatorIdentityDirectory
from app.infrastructure.access_denials import DenialLog
from app.infrastructure.clock import Clock
from app.infrastructure.emulator_reset import wipe_ledger
from app.infrastructure.event_store import timeout_env
from app.infrastructure.hsm_clusters import Pkcs11Clusters
from app.infrastructure.ledger import Ledger
from app.infrastructure.ledger_guard import Checkpointer, GuardStatus, LedgerWatch, guard_status
from app.infrastructure.ledger_signing import LedgerSigner, parse_verifier_keys
from app.infrastructure.memory.audit_store import NoAuditStore
from app.infrastructure.memory.denials import MemoryDenialLog
from app.infrastructure.memory.read_models import MemoryAccessKeyIndex, MemoryKeyDirectory
from app.infrastructure.memory.wrapping_keys import MemoryWrappingKeys
from app.infrastructure.memory_store import EVENT_STORE_ENV, MEMORY, ledger_env
from app.infrastructure.postgres.database import (
    POOL_RECONNECT_TIMEOUT,
    BoundedPool,
    bounded_connection_class,
    connection_params,
    database_deadline,
    is_unavailable,
    libpq_options,
    parse_url,
    resolve_database_url,
)
from app.infrastructure.postgres.migrate import apply_migrations
from app.infrastructure.read_models import AuditReads, KeyDirectoryReads, active_access_key_ids
from app.infrastructure.root_keys import (
    AesGcmRootKey,
    RootKey,
    RootKeyError,
    RotatingRootKey,
    close_root_key,
    root_key_id,
)
from app.infrastructure.seal_control import LocalSeal, SealControl
from app.infrastructure.shamir_root_key import (
    SealStatus,
    ShamirRootKey,
    UnsealAuthority,
    find_seal,
    load_seal,
    sealed_part,
)
from app.infrastructure.vault import ROOT_KEY_BYTES, Vault, load_root_key
from app.infrastructure.writer import LedgerWriter
from app.infrastructure.xks_client import XksProxyPool
from app.settings import Settings
from app.usecases.asymmetric import AsymmetricOperations
from app.usecases.auditing import AuditedCommands, Auditor
from app.usecases.auditors import AuditService, OnlineParts
from app.usecases.authorization import AccessControl
from app.usecases.crypto import CryptoOperations
from app.usecases.custody import RootKeyRotation, RotationOutcome
from app.usecases.custom_key_stores import CustomKeyStoreOperations
from app.usecases.explain import ExplainOperations
from app.usecases.external_keys import ExternalKeyOperations
from app.usecases.grants import GrantOperations
from app.usecases.imported import ImportedMaterial
from app.usecases.keys import DueJobs, KeyLifecycle, KeyService
from app.usecases.ledger_evidence import LedgerEvidence
from app.usecases.multi_region import MultiRegionOperations
from app.usecases.quotas import RequestQuotas
from app.usecases.resolution import KeyResolver
from app.usecases.store_keys import StoreKeys
from domain.actors import Actor
from domain.custody import RotationUnderWayError
from domain.errors import SealedError, UnsupportedOperationError, ValidationError
from domain.keys import Key
from domain.signed_notes import NoteVerifier
from projections.audit_trail import AuditTrailProjection
from projections.batched import DeadLetters
from projections.key_directory import KeyDirectoryProjection
from projections.ledger_checkpoints import covered_position
from projections.ledger_proofs import LedgerProofs
from projections.merkle_log import MerkleLogProjection

log = logging.getLogger("keyledger")
GIL_SWITCH_INTERVAL = 0.0005
GC_THRESHOLDS = (50_000, 50, 100)


READINESS_QUERY = "SELECT max(notification_id) FROM keyledger_events"


def migrate(database_url: str) -> list[str]:
    """Create the event store's tables (the library's) and apply our migrations."""
    env = connection_params(database_url) | {"CREATE_TABLE": "y"}
    Ledger(env=env).close()
    return apply_migrations(database_url)


def connection_pool(database_url: str, settings: Settings) -> ConnectionPool:
    """The service's pool (vault, views, reports): a wait for a connection never outlasts
    a request's deadline, every round trip is bounded (app.infrastructure.postgres.database), and a
    connection is checked as it is handed out, so that none left dead by a database restart fails a
    request."""
    io_timeout = settings.database_io_timeout_seconds
    return BoundedPool(
        database_url,
        min_size=1,
        max_size=8,
        open=True,
        timeout=settings.database_deadline_seconds,
        reconnect_timeout=POOL_RECONNECT_TIMEOUT,
        connection_class=bounded_connection_class(io_timeout),
        kwargs=libpq_options(_connect_timeout(database_url), io_timeout),
    )


def _connect_timeout(database_url: str) -> int:
    """The URL's own connect_timeout, if it sets one (0: the default)."""
    return int(float(parse_url(database_url).get("connect_timeout") or 0))


@dataclass
class Runtime:
    settings: Settings
    database_url: str
    ledger: Ledger
    pool: ConnectionPool
    vault: Vault
    writer: LedgerWriter
    identity: IdentityDirectory
    directory: KeyDirectoryProjection
    service: KeyService
    clock: Clock
    # The audit trail and the key views auditors read (projections/audit_trail.py), the
    # Auditor that records every API call (app/usecases/auditing.py), and the auditors'
    # use cases.
    audit: AuditTrailProjection
    auditor: Auditor
    audit_service: AuditService
    denials: DenialLog
    # The ledger's Merkle log (projections/merkle_log.py): runs where the audit trail runs.
    merkle: MerkleLogProjection | None = None
    # Its checkpoints and this process's watch over them (app/infrastructure/ledger_guard.py):
    # in every serving process (they need the root key), off with ledger_log.
    checkpointer: Checkpointer | None = None
    ledger_watch: LedgerWatch | None = None
    # Checkpoints, signers and proofs for auditors (app/usecases/ledger_evidence.py).
    ledger_evidence: LedgerEvidence | None = None
    # The Shamir-sealed root key, current or previous (None without one): see unseal and
    # seal; and this process's way to the service's unseal authority (seal_control.py).
    custody: ShamirRootKey | None = None
    unsealer: SealControl | None = None
    _scheduler_stop: threading.Event = field(default_factory=threading.Event)
    _scheduler: threading.Thread | None = None
    # Serving needs the root key: False from a seal until an unseal has finished (the
    # vault's secrets read, the guards started), not just until the key is held.
    _open: bool = True
    _started: bool = False
    _unsealer_started: bool = False
    _after_unseal: list[Callable[[], Any]] = field(default_factory=list)
    _seal_lock: threading.Lock = field(default_factory=threading.Lock)
    _rotation_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        run_migrations: bool = True,
        seal_control: SealControl | None = None,
    ) -> Runtime:
        """Build (not started). ``seal_control``: the way to the service's unseal authority
        when it is not in this process (a worker of ``keyledger run --workers N``)."""
        # The root key first: a wrong PIN or a missing key fails before anything starts
        # (the Shamir-sealed key is read, sealed, from the migrated database).
        early = None if settings.sealed_root_key else root_key_from_settings(settings)
        database_url = resolve_database_url(settings)
        if run_migrations:
            migrate(database_url)
        root_key = early if early is not None else root_key_from_settings(settings, database_url)
        custody = sealed_part(root_key)
        if custody is None and seal_control is not None:
            seal_control.close()  # nothing sealed here (a rotation away from it finished)
            seal_control = None
        if custody is not None and seal_control is None:
            seal_control = LocalSeal(UnsealAuthority(database_url))
        ledger = Ledger(
            env=ledger_env(
                connection_params(database_url)
                | timeout_env(
                    settings.database_deadline_seconds, settings.database_io_timeout_seconds
                )
                | {"CREATE_TABLE": "n"}
            )
        )
        pool = connection_pool(database_url, settings)
        vault = Vault(root_key, pool, cache_size=settings.key_cache_size)
        if custody is None:
            vault.check_root_key()
        else:  # sealed: its secrets are read on unseal
            vault.refuse_foreign_rows()
        clock = Clock(adjustable=settings.test_clock or settings.emulator)
        writer = LedgerWriter(
            ledger,
            database_url,
            cache_size=settings.key_cache_size,
            deadline=settings.database_deadline_seconds,
            io_timeout=settings.database_io_timeout_seconds,
            retry_interval=settings.database_retry_interval_seconds,
        )
        directory = KeyDirectoryProjection(ledger, pool, database_url)
        writer.commit_listeners.append(directory.committed)
        writer.after_load.append(prefetch_wrapping_keys(vault))
        writer.commit_listeners.append(vault.committed)
        audit = AuditTrailProjection(ledger, pool, database_url)
        merkle = MerkleLogProjection(ledger, pool, database_url) if settings.ledger_log else None
        if settings.run_audit_projection:  # else another process leads it: no wake-ups here
            writer.commit_listeners.append(audit.committed)
            if merkle is not None:
                writer.commit_listeners.append(merkle.committed)
        checkpointer, watch = ledger_guards(settings, database_url, vault)

        denials = DenialLog(pool)  # denials found authenticating and authorizing
        parts = wire_use_cases(
            settings,
            writer=writer,
            history=ledger,
            vault=vault,
            clock=clock,
            denials=denials,
            directory=KeyDirectoryReads(directory, pool),
            audit=AuditReads(audit, pool, ledger),
            active_access_keys=active_access_key_ids(pool),
        )
        return cls(
            settings,
            database_url,
            ledger,
            pool,
            vault,
            writer,
            parts.identity,
            directory,
            parts.service,
            clock,
            audit,
            parts.auditor,
            parts.audit_service,
            denials,
            merkle,
            checkpointer,
            watch,
            ledger_evidence=LedgerEvidence(store=LedgerProofs(pool), audit=parts.audit_service),
            custody=custody,
            unsealer=seal_control,
            _open=custody is None,
        )

    def start(self, *, writer_on_own_loop: bool = True) -> None:
        """Start the background parts. A server passes ``writer_on_own_loop=False`` and
        starts the writer on its own event loop (KeyLedgerApp's lifespan)."""
        # Background threads (projection, scheduler) hand the GIL back to the event
        # loop sooner than the default 5 ms.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        # Every request allocates a few hundred short-lived objects; the default
        # threshold ran a collection every few requests and full collections over the
        # whole key cache showed up as p99 latency. Collect less often; freeze what
        # start-up built.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        if writer_on_own_loop:
            self.writer.start()
        self.directory.start()
        if self.settings.run_audit_projection:
            self.audit.start()
            if self.merkle is not None:
                self.merkle.start()
        with self._seal_lock:
            self._started = True
            if not self.sealed:  # else they start on unseal: they need the root key
                self._start_guards()
        self._scheduler = threading.Thread(target=self._schedule, name="scheduler", daemon=True)
        self._scheduler.start()
        if writer_on_own_loop:
            self.start_unsealer()

    def start_unsealer(self) -> None:
        """Follow the service's unseal authority (once; after the writer runs: a worker of
        an unsealed service is given the key at once, and what waited for the unseal, the
        bootstrap administrator, then runs). A server calls it from its lifespan, before
        it listens (blocks: off the event loop)."""
        with self._seal_lock:
            if self.unsealer is None or self._unsealer_started:
                return
            self._unsealer_started = True
        self.unsealer.start(opened=self._open_with, sealed=self._forget)

    def _start_guards(self) -> None:
        for guard in (self.checkpointer, self.ledger_watch):
            if guard is not None:
                guard.start()

    # --- seal and unseal (the shamir provider; docs/key-custody.md) -----------------------
    @property
    def sealed(self) -> bool:
        """Whether calls that need the root key must be refused (SealedError)."""
        return not self._open

    def seal_status(self) -> SealStatus | None:
        """None when the root key is not sealable (no Shamir-sealed key): the service's
        unseal progress, and whether this process serves."""
        if self.unsealer is None:
            return None
        status = self.unsealer.status()
        if not status.sealed and not self._open:  # opened, the unseal still finishing here
            return replace(status, sealed=True, progress=status.threshold)
        if status.sealed and self._open:  # a seal on its way to this process
            return replace(status, sealed=False, progress=0)
        return status

    def when_unsealed(self, action: Callable[[], Any]) -> None:
        """Run ``action`` now if the root key is usable, else (once) after the next unseal:
        what needs the root key at start-up (the bootstrap administrator)."""
        with self._seal_lock:
            if self.sealed:
                self._after_unseal.append(action)
                return
        action()

    def unseal(self, share: bytes) -> SealStatus:
        """Give one unseal key share (blocks: call it off the event loop). The share that
        completes the threshold opens the root key in every process of the service; then
        each process's vault reads its secrets, the ledger's guards start and what waited
        for the unseal runs. Once unsealed, shares verify a pending new Shamir set; the
        last one makes it current (docs/key-custody.md)."""
        unsealer = self._unsealer()
        was_sealed = self.sealed
        status = unsealer.submit(share)
        if was_sealed:
            given = status.threshold if not status.sealed else status.progress
            log.info(
                "unseal key share accepted: %d of %d%s",
                given,
                status.threshold,
                "; root key opened" if not status.sealed else "",
            )
        elif status.new_set is not None:
            log.info(
                "new Shamir set's share accepted: %d of %d",
                status.new_set.progress,
                status.new_set.threshold,
            )
        return self.seal_status() or status

    def reset_unseal(self) -> SealStatus:
        """Forget the shares given so far."""
        return self._unsealer().reset()

    def _unsealer(self) -> SealControl:
        if self.unsealer is None:
            raise UnsupportedOperationError("this service's root key is not Shamir-sealed")
        return self.unsealer

    def _open_with(self, unseal_key: bytes) -> None:
        """The unseal key from the authority: open the seal (blocks). Unsealed already, a
        new Shamir set has become current: the seal is opened again, as it is now."""
        assert self.custody is not None
        was = self.custody.key_id
        self.custody.open(unseal_key)
        if self._open:
            if self.custody.key_id != was:
                log.warning(
                    "NEW SHAMIR SET in use: root key %s current, %s previous",
                    self.custody.key_id,
                    ", ".join(self.custody.known_ids[1:]) or "none",
                )
            return
        try:
            self.vault.check_root_key()  # the grant-token key: read before any call is served
        except Exception:
            self.custody.forget()
            log.exception("unsealed, but the vault could not start: sealed again")
            raise
        with self._seal_lock:
            self._open = True
            waiting, self._after_unseal = self._after_unseal, []
            if self._started:
                self._start_guards()
        log.warning("UNSEALED: root key %s is in memory; serving", self.vault.root_key_id)
        for action in waiting:
            try:
                action()
            except Exception:
                log.exception("a start-up step waiting for the unseal failed")

    def seal(self) -> bool:
        """Forget the root key and everything unwrapped under it, in every process of the
        service (blocks: off the event loop); whether this process was unsealed."""
        was_open = self._open
        self._unsealer().seal()
        return was_open

    def _forget(self) -> None:
        """Sealed: the guards stop (they hold the signing key) and are made anew, to start
        on the next unseal; every key unwrapped here is dropped."""
        assert self.custody is not None
        with self._seal_lock:
            self._open = False
            self.custody.forget()
            for guard in (self.checkpointer, self.ledger_watch):
                if guard is not None:
                    guard.stop()
            self.checkpointer, self.ledger_watch = ledger_guards(
                self.settings, self.database_url, self.vault
            )
        self.vault.forget()
        self.identity.forget_credentials()
        log.warning("SEALED: the root key and every key unwrapped under it are forgotten")

    # --- root-key rotation, in the service (docs/key-custody.md) -----------------------------
    @property
    def rotating(self) -> bool:
        """Whether this process is re-wrapping under a new root key now."""
        return self._rotation_lock.locked()

    def rotate_root_key(
        self,
        actor: Actor,
        batch_size: int,
        progress: Callable[[int, int], None] = lambda done, total: None,
        *,
        new_set: str | None = None,
        to: str | None = None,
    ) -> RotationOutcome:
        """Re-wrap every wrapping key under the current root key, here (blocks: off the
        event loop): what ``keyledger operator rotate-root-key --endpoint`` asks for when a
        Shamir-sealed key, which opens only in the unsealed service, is involved. With
        ``new_set`` (a pending Shamir set's root key id, verified by T of its shares),
        every process of the service first makes that set current. Rows are moved under a
        Shamir-sealed key only when the caller names it (``new_set`` or ``to``): its seal
        is in the database, which the caller, not the database, must vouch for."""
        if not self._rotation_lock.acquire(blocking=False):
            raise RotationUnderWayError("this process is rotating the root key already")
        try:
            if self.sealed:
                raise SealedError()
            if new_set is not None and new_set != self.vault.root_key_id:
                self._unsealer().switch(new_set)
                log.warning("new Shamir set %s made current by %s", new_set, actor.principal_arn)
            self._check_rotation_target(new_set or to)
            rotation = RootKeyRotation(
                vault=self.vault,
                runner=self.writer,
                clock=self.clock,
                actor=actor,
                account_id=self.settings.default_account_id,
                region=self.settings.default_region,
            )
            return rotation.run(batch_size, progress)
        finally:
            self._rotation_lock.release()

    def _check_rotation_target(self, named: str | None) -> None:
        current = self.vault.root_key_id
        if named is not None and named != current:
            raise ValidationError(f"the current root key is {current}, not {named}")
        sealed_current = self.custody is not None and not self.custody.previous
        if named is None and sealed_current and self.vault.rows_to_rewrap():
            raise ValidationError(
                f"rows would move under the Shamir-sealed root key {current}: name it"
                " (rotate-root-key --to ID, the id keyledger operator init printed)"
            )

    def stop(self) -> None:
        self._scheduler_stop.set()
        if self._scheduler is not None:
            self._scheduler.join(timeout=5)
            # Started by start() only: the identity commands run just the writer.
            self.directory.stop()
            self.audit.stop()
            if self.merkle is not None:
                self.merkle.stop()
            for guard in (self.checkpointer, self.ledger_watch):
                if guard is not None:
                    guard.stop()
        if self.unsealer is not None:
            self.unsealer.close()
        self.writer.stop()
        self.service.custom_key_stores.clusters.close()
        self.service.custom_key_stores.proxies.close()
        self.denials.close()
        self.vault.close()
        close_root_key(self.vault.root)
        self.pool.close()
        self.ledger.close()

    async def database_problem(self) -> str | None:
        """Why the database is not ready for requests, or None: the writer is not waiting
        for it to come back and it answers a query within readiness_timeout_seconds."""
        if not self.writer.available:
            return "unavailable: the writer is reconnecting"
        seconds = self.settings.readiness_timeout_seconds
        try:
            await asyncio.wait_for(self._ask_event_store(), seconds)
        except TimeoutError:
            return f"no answer within {seconds:g} s"
        except Exception as error:
            return f"unavailable: {type(error).__name__}"
        return None

    async def _ask_event_store(self) -> None:
        """One query of the events table on a connection of its own, on the event loop (no
        thread left waiting on a frozen server after the answer): a pool whose connections
        died with the server waits out its reconnect back-off, which says nothing about the
        database (it was back while /readyz still said 503)."""
        options = libpq_options(2, self.settings.database_io_timeout_seconds)
        conn = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True, **options)
        async with conn:
            await (await conn.execute(READINESS_QUERY)).fetchone()

    async def projection_gaps(self) -> dict[str, DeadLetters] | None:
        """Each view's events set aside (projections/batched.py), read within the
        readiness bound; None when the database does not answer in time."""
        views = [self.directory, self.audit]
        seconds = self.settings.readiness_timeout_seconds

        def read() -> dict[str, DeadLetters]:
            return {view.name: view.dead_letters() for view in views}

        try:
            with database_deadline(seconds):
                return await asyncio.wait_for(asyncio.to_thread(read), seconds)
        except Exception:  # /readyz and /metrics answer without it
            return None

    def ledger_status(self) -> GuardStatus | None:
        """This process's verification of the ledger (None: the log is off)."""
        if self.ledger_watch is None and self.checkpointer is None:
            return None
        return guard_status(self.ledger_watch, self.checkpointer)

    async def checkpoint_lag(self) -> float:
        """Seconds the oldest event not yet under a signed checkpoint has waited (NaN when
        the database does not answer in time or the log is off)."""
        if self.ledger_watch is None:  # the log is off
            return float("nan")
        seconds, now = self.settings.database_deadline_seconds, self.clock.now()

        def lag() -> float:
            with self.pool.connection() as conn:
                covered = covered_position(conn)
            pending = self.ledger.recorder.select_notifications(start=covered + 1, limit=1)
            if not pending:
                return 0.0
            event: Any = self.ledger.mapper.to_domain_event(pending[0])
            waiting_since: datetime = event.timestamp
            return max(0.0, (now - waiting_since).total_seconds())

        try:
            with database_deadline(seconds):
                return await asyncio.wait_for(asyncio.to_thread(lag), seconds)
        except Exception:  # the metrics page must answer even when the store does not
            return float("nan")

    async def audit_lag(self) -> float:
        """The audit trail's lag in seconds (NaN when the database does not answer in time)."""
        seconds, now = self.settings.database_deadline_seconds, self.clock.now()
        try:
            with database_deadline(seconds):
                return await asyncio.wait_for(asyncio.to_thread(self.audit.lag, now), seconds)
        except Exception:  # the metrics page must answer even when the store does not
            return float("nan")

    def check_seal(self) -> bool:
        """Seal this service if another one on the database switched to a new Shamir set
        (its keyholders unseal it again with the new set); whether it did. The database
        refuses new rows under the old key meanwhile (migration 017). Blocks."""
        if self.custody is None or self.sealed or not self.custody.missed_a_switch():
            return False
        log.error(
            "the Shamir set was switched by another service on this database (root key %s is"
            " no longer current): sealing; unseal with the new set's shares",
            self.custody.key_id,
        )
        self.seal()
        return True

    def _schedule(self) -> None:
        interval = self.settings.scheduler_interval_seconds
        while not self._scheduler_stop.wait(interval):
            try:
                self.check_seal()
            except Exception:
                log.exception("the seal check failed; retrying next interval")
            if self.sealed:  # rotations and deletions need the root key
                continue
            try:
                done = self.service.jobs.run_due_jobs()
                if done:
                    log.info("scheduler: %d rotation/deletion job(s) done", done)
            except Exception:
                log.exception("scheduler run failed; retrying next interval")

    # --- emulator mode (docs/emulator.md) -----------------------------------------------
    def reset_emulator(self) -> None:
        """Empty the ledger, its views and every cache, put the clock back to wall-clock
        time, then bring the bootstrap administrator back: a fresh service without a
        restart. Emulator mode only."""
        if not self.settings.emulator:
            raise RuntimeError("a reset empties the ledger: emulator mode only")
        background = self._background_parts()
        for part in background:
            part.stop()
        self.vault.forget()  # its stock of new wrapping keys goes with the rows below
        self.writer.emptied(lambda: wipe_ledger(self.database_url))
        # The ledger is empty: the clock may go back to wall-clock time (a test's moved
        # clock never carries over into the next test).
        self.clock.reset()
        self.vault.check_root_key()
        for projection in (self.directory, self.audit, self.merkle):
            if projection is not None:
                projection.forget_position()
        identity = self.identity
        if isinstance(identity, EmulatorIdentityDirectory):
            identity.forget_emulated_accounts()
        for part in background:
            part.start()
        self.bootstrap()

    def advance_clock(self, seconds: float) -> datetime:
        """Move the service clock forward, then run the jobs that fell due (deletions,
        rotations, expired imported material), so the caller sees their effect."""
        if not self.settings.emulator:
            raise RuntimeError("the service clock moves in emulator mode only")
        now = self.clock.advance(timedelta(seconds=seconds))
        self.service.jobs.run_due_jobs()
        return now

    def _background_parts(self) -> list[Any]:
        """The projections and guards this process runs (stopped around a reset)."""
        parts: list[Any] = [self.directory]
        if self.settings.run_audit_projection:
            parts += [self.audit, self.merkle]
        parts += [self.checkpointer, self.ledger_watch]
        return [part for part in parts if part is not None]

    def bootstrap(self) -> tuple[str, tuple[str, str] | None]:
        """The default account and its administrator (with the bootstrap key pair if set)."""
        settings = self.settings
        secret = settings.bootstrap_secret_access_key
        return self.identity.ensure_administrator(
            settings.default_account_id,
            settings.bootstrap_access_key_id,
            secret.get_secret_value() if secret else None,
        )


def root_key_from_settings(settings: Settings, database_url: str | None = None) -> RootKey:
    """The root key the settings name (docs/key-custody.md), with the previous ones of a
    rotation in progress: file keys (previous_root_keys), token keys
    (pkcs11_previous_key_labels) and the Shamir-sealed key (shamir_previous), whatever the
    current key's provider. A Shamir-sealed key, current or previous, is read, sealed,
    from ``database_url``."""
    if settings.sealed_root_key and database_url is None:
        raise RootKeyError("a Shamir-sealed root key is read from the database")
    opened: list[RootKey] = []
    try:
        previous: list[RootKey] = [AesGcmRootKey(k) for k in settings.previous_root_key_bytes()]
        for label in settings.pkcs11_previous_key_labels:
            opened.append(_token_root_key(settings, label))
        previous += opened
        if settings.shamir_previous:
            assert database_url is not None
            previous += _previous_seal(database_url)
        current: RootKey
        if settings.root_key_provider == "shamir":
            assert database_url is not None
            current = ShamirRootKey(load_seal(database_url), database_url)
        elif settings.root_key_provider == "pkcs11":
            current = _token_root_key(settings, settings.pkcs11_key_label)
        else:
            current = AesGcmRootKey(
                settings.root_key_bytes()
                or load_root_key(data_dir=settings.data_dir, embedded=settings.database_url is None)
            )
    except BaseException:
        for key in opened:  # their token sessions
            close_root_key(key)
        raise
    return RotatingRootKey(current, previous) if previous else current


def named_root_key_ids(settings: Settings) -> list[str]:
    """The ids of the root keys held outside the database that the settings name (file
    keys and token keys, current and previous): what ``keyledger operator init`` accepts
    rows to be under when a deployment moves to a Shamir-sealed key."""
    ids = [root_key_id(key) for key in settings.previous_root_key_bytes()]
    current = settings.root_key_bytes()
    if settings.root_key_provider == "file" and current is not None:
        ids.append(root_key_id(current))
    labels = list(settings.pkcs11_previous_key_labels)
    if settings.root_key_provider == "pkcs11":
        labels.append(settings.pkcs11_key_label)
    for label in labels:
        key = _token_root_key(settings, label)
        try:
            ids.append(key.key_id)
        finally:
            close_root_key(key)
    return ids


def _previous_seal(database_url: str) -> list[RootKey]:
    """The Shamir-sealed key as a previous one; none once a rotation away from it is done
    (it deleted the seal: nothing needs it)."""
    seal = find_seal(database_url)
    if seal is None:
        log.warning(
            "KEYLEDGER_SHAMIR_PREVIOUS is set but the database has no sealed root key (a"
            " rotation away from it completed): nothing needs it; remove the setting"
        )
        return []
    return [ShamirRootKey(seal, database_url, previous=True)]


def _token_root_key(settings: Settings, label: str) -> RootKey:
    # Imported here: only a deployment with an HSM loads the PKCS#11 binding.
    from app.infrastructure.pkcs11_root_key import Pkcs11Config, Pkcs11RootKey

    return Pkcs11RootKey(Pkcs11Config.from_settings(settings, key_label=label))


def ledger_guards(
    settings: Settings, database_url: str, vault: Vault
) -> tuple[Checkpointer | None, LedgerWatch | None]:
    """The checkpointer and the watch of a serving process (None, None without the log).
    Both trust this process's own signing key (from the root key), never the database's
    list, plus the configured ledger_trusted_keys.

    The workers of ``keyledger run --workers N`` (run_audit_projection false) sign nothing
    and only sample: the projection process signs and recomputes the recent range
    (`projection_guards`), off the workers' event loops. A Shamir-sealed key cannot be
    unsealed there, so then the workers sign."""
    if not settings.ledger_log:
        return None, None
    signs_here = settings.run_audit_projection or settings.sealed_root_key
    return _guards(settings, database_url, lambda: vault, signs_here)


def projection_guards(
    settings: Settings, database_url: str, pool: ConnectionPool
) -> tuple[Checkpointer | None, LedgerWatch | None]:
    """The checkpointer and the watch of ``keyledger projections run`` (the supervisor's
    projection process): its root key and vault are opened in the checkpointer's thread,
    on first use, and retried until they open (the development key may not exist yet)."""
    if not settings.ledger_log or settings.sealed_root_key:
        return None, None
    no_root_key = settings.root_key_provider == "file" and settings.root_key_bytes() is None
    if no_root_key and settings.database_url is not None:  # none here, and never will be
        log.info("no root key in this process: it signs no checkpoints")
        return None, None
    opened: list[Vault] = []
    lock = threading.Lock()

    def vault() -> Vault:
        with lock:
            if not opened:
                found = Vault(root_key_from_settings(settings, database_url), pool)
                found.check_root_key()
                opened.append(found)
            return opened[0]

    return _guards(settings, database_url, vault, True)


def _guards(
    settings: Settings, database_url: str, vault: Callable[[], Vault], signs: bool
) -> tuple[Checkpointer | None, LedgerWatch]:
    origin = settings.checkpoint_origin
    trusted = parse_verifier_keys(settings.ledger_trusted_keys)

    def signer() -> LedgerSigner:
        return LedgerSigner.from_seed(origin, vault().ledger_signing_seed())

    def verifiers() -> list[NoteVerifier]:
        return [signer().verifier, *trusted]

    checkpointer: Checkpointer | None = None
    watch = LedgerWatch(
        database_url,
        verifiers,
        settings.ledger_watch_interval_seconds,
        # One process recomputes the recent range: the one that signs.
        recent=lambda: checkpointer is not None and checkpointer.leading,
    )
    if signs:
        checkpointer = Checkpointer(
            database_url,
            signer,
            trusted,
            settings.ledger_checkpoint_interval_seconds,
            watch_failure=lambda: watch.state.failure,
        )
    return checkpointer, watch


def prefetch_wrapping_keys(vault: Vault) -> Callable[[Any, list[Any]], Awaitable[None]]:
    """The writer's after_load hook: the vault unwraps the wrapping keys of keys just read."""

    async def prefetch(conn: Any, aggregates: list[Any]) -> None:
        keys = [a.id for a in aggregates if isinstance(a, Key)]
        try:
            await vault.prefetch(conn, keys)
        except Exception as error:  # the commands that needed them ask again
            if is_unavailable(error):  # unless the database is away: the batch waits
                raise
            log.warning("wrapping keys not prefetched: %s", type(error).__name__)

    return prefetch


@dataclass(frozen=True)
class UseCases:
    """What the adapters hold, built on the infrastructure given (wire_use_cases)."""

    identity: IdentityDirectory
    service: KeyService
    auditor: Auditor
    audit_service: AuditService


def wire_use_cases(
    settings: Settings,
    *,
    writer: LedgerWriter,
    history: ports.EventHistory,
    vault: ports.Vault,
    clock: ports.Clock,
    denials: ports.DenialLog,
    directory: ports.KeyDirectory,
    audit: ports.AuditStore,
    active_access_keys: ports.ActiveAccessKeys,
) -> UseCases:
    """The use cases on the ports: the same wiring over PostgreSQL (Runtime) and in memory
    (InMemoryRuntime)."""
    # The use cases run their commands through the auditor's runner: within an audited
    # call (Auditor.call), each goes to the writer with the call's hooks.
    runner = AuditedCommands(writer)
    partition, operator = settings.partition, settings.default_account_id
    # Emulator mode (docs/emulator.md) is chosen here, once: normal mode's callers are
    # verified by the plain IdentityDirectory, with no emulator branch on its path.
    identity = (
        EmulatorIdentityDirectory(
            runner,
            history,
            vault,
            clock,
            partition,
            denials=denials,
            active_access_keys=active_access_keys,
            default_account_id=settings.default_account_id,
        )
        if settings.emulator
        else IdentityDirectory(
            runner,
            history,
            vault,
            clock,
            partition,
            denials=denials,
            active_access_keys=active_access_keys,
        )
    )
    access = AccessControl(
        runner=runner, vault=vault, clock=clock, denials=denials, partition=partition
    )
    clusters = Pkcs11Clusters(settings.cloudhsm_clusters, str(settings.pkcs11_module))
    proxies = XksProxyPool(
        timeout=settings.xks_proxy_timeout_seconds,
        max_connections=settings.xks_proxy_max_connections,
        endpoints=settings.xks_proxy_endpoints,
    )
    stores = StoreKeys(vault=vault, clusters=clusters, proxies=proxies)
    resolver = KeyResolver(
        access=access, vault=vault, clock=clock, partition=partition, stores=stores
    )
    imported = ImportedMaterial(runner=runner, resolver=resolver, vault=vault, clock=clock)
    # The default account administers (and may explain, and audit) every account.
    audit_service = AuditService(
        store=audit,
        clock=clock,
        operator_account=operator,
        online=OnlineParts(runner=runner, access=access, resolver=resolver),
    )
    service = KeyService(
        keys=KeyLifecycle(
            runner=runner,
            resolver=resolver,
            access=access,
            vault=vault,
            clock=clock,
            directory=directory,
            history=history,
            partition=partition,
            seeded_keys=settings.emulator,
        ),
        crypto=CryptoOperations(runner=runner, resolver=resolver, access=access),
        asymmetric=AsymmetricOperations(runner=runner, resolver=resolver),
        imported=imported,
        grants=GrantOperations(
            runner=runner,
            resolver=resolver,
            access=access,
            clock=clock,
            directory=directory,
            partition=partition,
        ),
        explain=ExplainOperations(
            runner=runner,
            resolver=resolver,
            access=access,
            clock=clock,
            history=history,
            partition=partition,
            operator_account=operator,
        ),
        audit=audit_service,
        custom_key_stores=CustomKeyStoreOperations(
            runner=runner,
            access=access,
            vault=vault,
            clock=clock,
            clusters=clusters,
            proxies=proxies,
        ),
        jobs=DueJobs(
            runner=runner,
            vault=vault,
            clock=clock,
            directory=directory,
            imported=imported,
            partition=partition,
            stores=stores,
        ),
        access=access,
        external=ExternalKeyOperations(runner=runner, resolver=resolver),
        multi_region=MultiRegionOperations(
            runner=runner,
            resolver=resolver,
            access=access,
            vault=vault,
            clock=clock,
            partition=partition,
            regions=frozenset(settings.regions),
        ),
        # Each process enforces its share of an account's quotas (docs/operations.md).
        quotas=RequestQuotas(
            enabled=settings.quotas_enabled,
            rates=settings.quota_rates,
            share=settings.quota_share,
        ),
    )
    auditor = Auditor(writer, identity, clock, is_unavailable)
    return UseCases(identity, service, auditor, audit_service)


@dataclass
class InMemoryRuntime:
    """The use cases and the writer on the in-memory ledger: no PostgreSQL, no server.

    The same wiring as Runtime (wire_use_cases) over in-memory ports: the Ledger and the
    writer's store in memory (app.infrastructure.memory_store), the real Vault whose
    wrapping-key rows live in memory, the key directory and access-key index following the
    Ledger's notification log, the denial log in a list. The audit trail's read models
    exist only in PostgreSQL (app.infrastructure.memory.audit_store): ``service.audit``
    refuses to read. Nothing runs in the background but the writer's event loop thread;
    the scheduler's jobs run when called (``service.jobs.run_due_jobs()``).
    """

    settings: Settings
    ledger: Ledger
    vault: Vault
    wrapping_keys: MemoryWrappingKeys
    writer: LedgerWriter
    clock: Clock
    denials: MemoryDenialLog
    directory: MemoryKeyDirectory
    access_keys: MemoryAccessKeyIndex
    identity: IdentityDirectory
    service: KeyService
    auditor: Auditor
    audit_service: AuditService

    @classmethod
    def build(cls, settings: Settings) -> InMemoryRuntime:
        """Build (not started: see ``start``). The root key is the settings' or a fresh one."""
        root_key = settings.root_key_bytes() or secrets.token_bytes(ROOT_KEY_BYTES)
        ledger = Ledger(env=ledger_env({}, {EVENT_STORE_ENV: MEMORY}))
        wrapping_keys = MemoryWrappingKeys()
        vault = Vault(root_key, wrapping_keys, cache_size=settings.key_cache_size)
        vault.check_root_key()
        clock = Clock(adjustable=settings.test_clock or settings.emulator)
        writer = LedgerWriter(
            ledger,
            "",
            cache_size=settings.key_cache_size,
            deadline=settings.database_deadline_seconds,
            io_timeout=settings.database_io_timeout_seconds,
            retry_interval=settings.database_retry_interval_seconds,
        )
        writer.after_load.append(prefetch_wrapping_keys(vault))
        writer.commit_listeners.append(vault.committed)
        denials = MemoryDenialLog()
        directory = MemoryKeyDirectory(ledger)
        access_keys = MemoryAccessKeyIndex(ledger)
        parts = wire_use_cases(
            settings,
            writer=writer,
            history=ledger,
            vault=vault,
            clock=clock,
            denials=denials,
            directory=directory,
            audit=NoAuditStore(),
            active_access_keys=access_keys,
        )
        return cls(
            settings,
            ledger,
            vault,
            wrapping_keys,
            writer,
            clock,
            denials,
            directory,
            access_keys,
            parts.identity,
            parts.service,
            parts.auditor,
            parts.audit_service,
        )

    def start(self) -> None:
        """Start the writer on an event loop thread of its own."""
        self.writer.start()

    def stop(self) -> None:
        self.writer.stop()
        self.service.custom_key_stores.clusters.close()
        self.service.custom_key_stores.proxies.close()
        self.vault.close()
        self.ledger.close()

    def bootstrap(self) -> tuple[str, tuple[str, str] | None]:
        """The default account and its administrator (as Runtime.bootstrap)."""
        settings = self.settings
        secret = settings.bootstrap_secret_access_key
        return self.identity.ensure_administrator(
            settings.default_account_id,
            settings.bootstrap_access_key_id,
            secret.get_secret_value() if secret else None,
        )
