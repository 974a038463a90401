"""The threads that keep the ledger verifiable while the service runs (issue 13).

* `Checkpointer`: one process at a time (a PostgreSQL advisory lock elects it) signs the
  Merkle log's tree head every ``interval`` seconds when it grew
  (projections/ledger_checkpoints.py). It holds the signing key, unwrapped from the root
  key, so it runs in the service's processes, never in the projection process.
* `LedgerWatch`: every serving process checks the newest checkpoint and samples the tree;
  the signing process also re-verifies everything appended since its last pass, and stops
  signing once its watch failed (projections/ledger_watch.py); a failure is reported
  loudly (an ERROR line every pass), in /readyz and in /metrics.

Both trust the signing key this process derives from the root key, plus any extra
verifier keys configured (``ledger_trusted_keys``), never the keys the database lists.
"""

from __future__ import annotations

import logging
import random
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from app.infrastructure.ledger_signing import LedgerSigner, publish
from domain.signed_notes import NoteVerifier
from projections.ledger_checkpoints import IssueOutcome, issue_checkpoint
from projections.ledger_watch import WatchState, watch_pass

log = logging.getLogger("keyledger.ledger")

CHECKPOINTER_LOCK_ID = 0x6B6C6370  # "klcp"
RETRY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class GuardStatus:
    """What /readyz and /metrics say about the ledger's verification in this process."""

    checkpoint_size: int  # the newest checkpoint this process verified (or signed)
    verified_size: int  # leaves this process recomputed from the events
    sampled: int  # older leaves it checked by sampling
    passes: int
    checked_at: datetime | None
    failure: str | None
    signer_problem: str | None  # why the checkpointer refuses to sign, when it leads


class _Loop(ABC):
    """A daemon thread calling ``step`` every ``interval`` seconds until stopped."""

    name = "ledger"

    def __init__(self, database_url: str, interval: float) -> None:
        self._database_url = database_url
        self.interval = interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()  # again after stop() (emulator mode's reset)
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @abstractmethod
    def run(self) -> None:
        """The thread's body: loop until ``_stopping`` is set."""


class Checkpointer(_Loop):
    """Signs a checkpoint whenever the tree grew, at most every ``interval`` seconds."""

    name = "checkpointer"

    def __init__(
        self,
        database_url: str,
        signer: Callable[[], LedgerSigner],
        trusted: list[NoteVerifier],
        interval: float = 1.0,
        watch_failure: Callable[[], str | None] = lambda: None,
    ) -> None:
        super().__init__(database_url, interval)
        self._signer_factory = signer
        self._trusted = trusted
        self._watch_failure = watch_failure  # this process's watch: a failure stops signing
        self.leading = False
        self.signed = 0
        self.problem: str | None = None

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._database_url, autocommit=True) as conn:
                    row = conn.execute(
                        "SELECT pg_try_advisory_lock(%s)", (CHECKPOINTER_LOCK_ID,)
                    ).fetchone()
                    if row and row[0]:
                        self.leading = True
                        try:
                            self._lead(conn)
                        finally:
                            self.leading = False
                        continue
            except psycopg.Error as error:
                log.warning("checkpointer paused: %s", error)
            except Exception:
                log.exception("checkpointer failed; retrying")
            self._stopping.wait(RETRY_SECONDS)

    def _lead(self, conn: psycopg.Connection[Any]) -> None:
        signer = self._signer_factory()
        publish(conn, signer)
        verifiers = [signer.verifier, *self._trusted]
        while not self._stopping.is_set():
            found = self._watch_failure()
            outcome = (
                IssueOutcome(problem=f"the ledger watch failed: {found}")
                if found is not None
                else issue_checkpoint(conn, signer.sign_checkpoint, verifiers)
            )
            if outcome.problem != self.problem and outcome.problem is not None:
                log.error("LEDGER CHECKPOINTS STOPPED: %s; nothing more is signed", outcome.problem)
            self.problem = outcome.problem
            if outcome.signed is not None:
                self.signed += 1
            self._stopping.wait(self.interval)


class LedgerWatch(_Loop):
    """Re-verifies recent ranges and samples older leaves every ``interval`` seconds."""

    name = "ledger-watch"

    def __init__(
        self,
        database_url: str,
        verifiers: Callable[[], list[NoteVerifier]],
        interval: float = 10.0,
        *,
        max_events: int = 100_000,
        samples: int = 8,
        recent: Callable[[], bool] = lambda: True,
    ) -> None:
        super().__init__(database_url, interval)
        self._verifiers_factory = verifiers
        self._recent = recent  # whether this process re-verifies the recent range
        self.max_events = max_events
        self.samples = samples
        self.state = WatchState()
        self.checked_at: datetime | None = None
        self._rng = random.Random()

    def run(self) -> None:
        verifiers: list[NoteVerifier] | None = None
        first = True
        while not self._stopping.wait(0 if first else self.interval):
            first = False
            try:
                if verifiers is None:
                    verifiers = self._verifiers_factory()
                with psycopg.connect(self._database_url, autocommit=True) as conn:
                    self.check(conn, verifiers)
            except psycopg.Error as error:
                log.warning("ledger watch paused: %s", error)
            except Exception:
                log.exception("ledger watch pass failed; retrying")

    def check(self, conn: psycopg.Connection[Any], verifiers: list[NoteVerifier]) -> str | None:
        failure = watch_pass(
            conn,
            self.state,
            verifiers,
            max_events=self.max_events,
            samples=self.samples,
            rng=self._rng,
            recent=self._recent(),
        )
        self.checked_at = datetime.now().astimezone()
        if failure is not None:
            log.error("LEDGER VERIFICATION FAILED: %s", failure)
        return failure


def guard_status(watch: LedgerWatch | None, checkpointer: Checkpointer | None) -> GuardStatus:
    state = watch.state if watch is not None else WatchState()
    return GuardStatus(
        checkpoint_size=state.trusted.size if state.trusted is not None else 0,
        verified_size=state.verified_size,
        sampled=state.sampled,
        passes=state.passes,
        checked_at=watch.checked_at if watch is not None else None,
        failure=state.failure,
        signer_problem=checkpointer.problem if checkpointer is not None else None,
    )
