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
from dataclasses import dataclass

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
    ) -> RotationOutcome | None:
        """Re-wrap every row under the current root key; None when none was left and no
        rotation was under way."""
        to_key = self._vault.root_key_id
        from_keys = list(self._vault.previous_root_key_ids)
        pending = self._vault.rows_to_rewrap()
        self._initial = from_keys[0] if from_keys else to_key
        custody = self._runner.run_sync(self._custody)
        resumed = custody.rotating_to == to_key
        if pending == 0 and not resumed:
            return None
        if not resumed:
            self._record("start", from_keys, to_key, pending)
        done = 0
        while moved := self._vault.rewrap_batch(batch_size):
            done += moved
            progress(done, pending)
        self._record("complete", from_keys, to_key, done)
        return RotationOutcome(from_keys, to_key, done, resumed)

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
