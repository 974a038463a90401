"""The root key's custody as a ledger stream: its rotations (issue 14; docs/key-custody.md).

One aggregate for the deployment. A rotation re-wraps every per-key wrapping key under a
new root key (`keyledger operator rotate-root-key`); it is recorded when it starts and
when it completes, naming the root keys by their ids (never the keys), so that the ledger
and the audit trail say when the old key stopped being needed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate

from domain.actors import ActorRecord
from domain.errors import InvalidStateError, ValidationError

CUSTODY_ID = uuid.UUID("6b6c6373-7573-4000-8000-000000000001")  # "klcus..."


class RotationUnderWayError(InvalidStateError):
    """A new root key cannot be introduced while rows are still under a previous one:
    finish the rotation under way first (``keyledger operator rotate-root-key``)."""


class NoPendingSetError(ValidationError):
    """Shares were given for a new Shamir set, but none is pending."""


class SealedKeyElsewhereError(ValidationError):
    """A Shamir-sealed root key opens only in the unsealed service, never in a CLI process:
    the rotation must run there (``rotate-root-key --endpoint``)."""


@dataclass(frozen=True)
class RotationScope:
    """What both records of one rotation say: who, where it is delivered, from and to."""

    actor: ActorRecord
    account_id: str  # the operator's account and Region: where the record is delivered
    region: str
    from_key_ids: list[str]
    to_key_id: str

    def fields(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "account_id": self.account_id,
            "region": self.region,
            "from_key_ids": list(self.from_key_ids),
            "to_key_id": self.to_key_id,
        }


class RootKeyCustody(Aggregate):
    """Which root key wraps the wrapping keys, and the rotations between them."""

    class Created(Aggregate.Created):
        root_key_id: str

    def __init__(self, *, root_key_id: str) -> None:
        self.root_key_id = root_key_id
        self.rotating_to: str | None = None

    @classmethod
    def create(cls, *, now: datetime, root_key_id: str) -> RootKeyCustody:
        return cls._create(cls.Created, id=CUSTODY_ID, timestamp=now, root_key_id=root_key_id)

    class RotationStarted(Aggregate.Event):
        actor: ActorRecord
        account_id: str  # the operator's account and Region: where the record is delivered
        region: str
        from_key_ids: list[str]
        to_key_id: str
        wrapping_keys: int  # rows still to re-wrap when it started

        def apply(self, aggregate: Any) -> None:
            aggregate.rotating_to = self.to_key_id

    class RotationCompleted(Aggregate.Event):
        actor: ActorRecord
        account_id: str
        region: str
        from_key_ids: list[str]
        to_key_id: str
        rewrapped: int

        def apply(self, aggregate: Any) -> None:
            aggregate.root_key_id = self.to_key_id
            aggregate.rotating_to = None

    def start_rotation(self, *, now: datetime, scope: RotationScope, wrapping_keys: int) -> None:
        """Record the start, once: a second rotating process (another worker, a retry after
        a write conflict) joins the rotation under way rather than starting it again."""
        if self.rotating_to == scope.to_key_id:
            return
        self.trigger_event(
            self.RotationStarted, timestamp=now, wrapping_keys=wrapping_keys, **scope.fields()
        )

    def complete_rotation(self, *, now: datetime, scope: RotationScope, rewrapped: int) -> None:
        """Record the end, once (the first rotating process to finish records it)."""
        if self.rotating_to != scope.to_key_id:
            return
        self.trigger_event(
            self.RotationCompleted, timestamp=now, rewrapped=rewrapped, **scope.fields()
        )
