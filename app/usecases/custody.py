"""Root-key rotation online (issue 14; docs/key-custody.md).

The service runs with the new root key as its current one and the old ones as previous
(``KEYLEDGER_ROOT_KEY`` + ``KEYLEDGER_PREVIOUS_ROOT_KEYS``, or a provider's equivalent):
it wraps every new wrapping key under the new key and still opens rows under the old.
`RootKeyRotation.run` then re-wraps the remaining rows in small batches, each its own
transaction, while the service keeps serving (a row's lock makes a concurrent shred
wait for its batch). Progress lives in the rows themselves (their ``root_key_id``), so a
crashed rotation resumes where it stopped when run again. It is recorded in the ledger
(`domain.custody.RootKeyCustody`): started, then completed, and the audit trail shows both.
When it completes, nothing needs the previous keys any more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.ports import Clock, CommandRunner, RootKeyRewrap, UnitOfWork
from domain.actors import Actor
from domain.custody import CUSTODY_ID, RootKeyCustody, RotationScope

DEFAULT_BATCH = 500


@dataclass(frozen=True)
class RotationOutcome:
    from_key_ids: list[str]
    to_key_id: str
    rewrapped: int
    resumed: bool  # a rotation to this key had started before (and not completed)
    # Previous root keys the provider kept and destroyed now that no row needs them (a
    # Shamir seal's); file and token keys are the operator's to destroy.
    destroyed: list[str] = field(default_factory=list)

    @property
    def rotated(self) -> bool:
        """Whether there was anything to rotate (else every row was under the key)."""
        return self.rewrapped > 0 or self.resumed

    def public(self) -> dict[str, Any]:
        """As the CLI and the REST answer show it: root key ids, never keys."""
        return {
            "rotated": self.rotated,
            "resumed": self.resumed,
            "rewrapped": self.rewrapped,
            "from_root_key_ids": list(self.from_key_ids),
            "to_root_key_id": self.to_key_id,
            "destroyed_root_key_ids": list(self.destroyed),
        }


class RootKeyRotation:
    def __init__(
        self,
        *,
        vault: RootKeyRewrap,
        runner: CommandRunner,
        clock: Clock,
        actor: Actor,
        account_id: str,
        region: str,
    ) -> None:
        self._vault = vault
        self._runner = runner
        self._clock = clock
        self._actor = actor
        self._where = (account_id, region)
        self._initial = ""  # the root key id the custody stream starts with, if new

    def run(
        self,
        batch_size: int = DEFAULT_BATCH,
        progress: Callable[[int, int], None] = lambda done, total: None,
    ) -> RotationOutcome:
        """Re-wrap every row under the current root key, record the rotation, then destroy
        the previous keys the provider keeps (`RotationOutcome.rotated` is False when no
        row was left and no rotation was under way)."""
        to_key = self._vault.root_key_id
        from_keys = list(self._vault.previous_root_key_ids)
        pending = self._vault.rows_to_rewrap()
        self._initial = from_keys[0] if from_keys else to_key
        custody = self._runner.run_sync(self._custody)
        resumed = custody.rotating_to == to_key
        done = 0
        if pending or resumed:
            if not resumed:
                self._record("start", from_keys, to_key, pending)
            done = self._rewrap_all(batch_size, lambda moved: progress(moved, pending))
            self._record("complete", from_keys, to_key, done)
        destroyed = self._vault.retire_previous_root_keys()
        return RotationOutcome(from_keys, to_key, done, resumed, destroyed)

    def _rewrap_all(self, batch_size: int, progress: Callable[[int], None]) -> int:
        """Batches until no row is left under another key: rows another transaction
        holds (a shred of the same key) are skipped, then waited for, so that completion
        means every row, not every row that was free."""
        done = 0
        while True:
            moved = self._vault.rewrap_batch(batch_size)
            if not moved and self._vault.rows_to_rewrap():
                moved = self._vault.rewrap_batch(batch_size, wait=True)
            if not moved and not self._vault.rows_to_rewrap():
                return done
            done += moved
            if moved:
                progress(done)

    def _custody(self, uow: UnitOfWork) -> RootKeyCustody:
        found = uow.get(CUSTODY_ID)
        if found is None:
            found = RootKeyCustody.create(now=self._clock.now(), root_key_id=self._initial)
            uow.add(found)
        assert isinstance(found, RootKeyCustody)
        return found

    def _record(self, step: str, from_keys: list[str], to_key: str, count: int) -> None:
        account_id, region = self._where
        scope = RotationScope(self._actor.record(), account_id, region, from_keys, to_key)

        def command(uow: UnitOfWork) -> None:
            custody, now = self._custody(uow), self._clock.now()
            if step == "start":
                custody.start_rotation(now=now, scope=scope, wrapping_keys=count)
            else:
                custody.complete_rotation(now=now, scope=scope, rewrapped=count)

        self._runner.run_sync(command)
