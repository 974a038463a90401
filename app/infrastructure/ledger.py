"""The event store: an eventsourcing Application holding every aggregate's events."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
    Repository,
)
from eventsourcing.persistence import JSONTranscoder, Mapper, Transcoder, Transcoding

from app.infrastructure.event_store import POOL_TIMEOUT_KEY
from app.infrastructure.json_transcoder import LedgerMapper, OrjsonTranscoder
from app.infrastructure.postgres.database import database_deadline
from domain.keys import Key, KeyMaterial


class BytesAsBase64(Transcoding):
    """The JSON transcoder has no bytes support; wrapped material and secrets are bytes."""

    type = bytes
    name = "b64"

    def encode(self, obj: bytes) -> str:
        return base64.b64encode(obj).decode()

    def decode(self, data: str) -> bytes:
        return base64.b64decode(data)


class KeyMaterialAsDict(Transcoding):
    type = KeyMaterial
    name = "key_material"

    def encode(self, obj: KeyMaterial) -> dict[str, Any]:
        encoded = {
            "version": obj.version,
            "material_id": obj.material_id,
            "wrapped": obj.wrapped,
            "created": obj.created,
            "rotation_type": obj.rotation_type,
            "imported": obj.imported,
        }
        if obj.in_store:  # only then: every other key's events keep their bytes
            encoded["in_store"] = True
        return encoded

    def decode(self, data: dict[str, Any]) -> KeyMaterial:
        # Events from before "imported" or "in_store" existed default to False.
        return KeyMaterial(**data)


def project_fast(aggregate: Any, events: Any) -> Any:
    """Replay by calling each event's mutate(): several times faster than the default."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


class BoundedRepository(Repository[Any]):
    """Reads whole aggregates within a deadline. Requests read identities this way (an
    access key's credential, a principal, when not cached): a frozen database fails them
    in time instead of holding the request until it wakes."""

    def __init__(self, plain: Repository[Any], deadline: float | None) -> None:
        super().__init__(plain.event_store, snapshot_store=plain.snapshot_store)
        self.cache = plain.cache  # and the library's settings, as it read them
        self.fastforward = plain.fastforward
        self.fastforward_skipping = plain.fastforward_skipping
        self.deepcopy_from_cache = plain.deepcopy_from_cache
        self.deadline = deadline

    def get(self, *args: Any, **kwargs: Any) -> Any:
        if self.deadline is None:
            return super().get(*args, **kwargs)
        with database_deadline(self.deadline):
            return super().get(*args, **kwargs)


class Ledger(Application):
    """All KeyLedger aggregates share one application, so one transaction spans them."""

    name = "keyledger"
    snapshotting_intervals: ClassVar[dict[Any, int]] = {Key: 1000}
    snapshotting_projectors: ClassVar[dict[Any, Any]] = {Key: project_fast}

    def construct_repository(self) -> Repository[Any]:
        deadline = self.env.get(POOL_TIMEOUT_KEY)  # the requests' deadline (app.bootstrap)
        plain = super().construct_repository()
        return BoundedRepository(plain, float(deadline) if deadline else None)

    def _record(self, processing_event: ProcessingEvent[Any]) -> Any:
        """Record, then move aggregates to the versions the store settled on.

        The recorder may renumber our events after other processes' Used events on
        the same key (see app.infrastructure.event_store); the aggregates in memory must follow.
        """
        recordings = super()._record(processing_event)
        settled = getattr(self.recorder, "settled_heads", None)
        if settled is not None:
            for aggregate_id, version in settled().items():
                aggregate = processing_event.aggregates.get(aggregate_id)
                if aggregate is not None and aggregate.version != version:
                    aggregate.version = version  # type: ignore[misc]
        return recordings

    def _take_snapshots(self, processing_event: ProcessingEvent[Any]) -> None:
        """Snapshot from the aggregate in memory, not by replaying it from the database.

        The library's default re-reads up to ``interval`` events in the writer's commit
        path; the committed aggregate is already at hand.
        """
        if self.snapshots is None:
            return
        snapshots = snapshots_due(
            processing_event.aggregates, processing_event.events, self.snapshotting_intervals
        )
        if snapshots:
            self.snapshots.put(snapshots)

    # --- app.ports.EventHistory ----------------------------------------------------------
    def history(
        self, aggregate_id: uuid.UUID, *, gt: int | None = None, limit: int | None = None
    ) -> Iterable[Any]:
        """The aggregate's events after version ``gt``, oldest first, at most ``limit``."""
        return self.events.get(aggregate_id, gt=gt, limit=limit)

    def find(self, aggregate_id: uuid.UUID) -> Any | None:
        """The aggregate as committed now (read within the deadline), or None."""
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def construct_mapper(self) -> Mapper[Any]:
        # Used events stored by a path of their own (json_transcoder.LedgerMapper), unless
        # the environment names another mapper.
        if self.env.get(self.factory.MAPPER_TOPIC):
            return super().construct_mapper()
        return self.factory.mapper(
            transcoder=self.construct_transcoder(), mapper_class=LedgerMapper
        )

    def construct_transcoder(self) -> Transcoder:
        # The library's JSON, byte for byte, mostly written by orjson (json_transcoder.py).
        transcoder = OrjsonTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(BytesAsBase64())
        transcoder.register(KeyMaterialAsDict())


def snapshots_due(
    aggregates: Mapping[Any, Any], events: Iterable[Any], intervals: Mapping[Any, int]
) -> list[Any]:
    """Snapshots, taken from the aggregates in memory, of each one whose events crossed its
    snapshotting interval: the one rule of the Ledger's save and the group-commit writer."""
    crossed = {
        event.originator_id
        for event in events
        if (aggregate := aggregates.get(event.originator_id)) is not None
        and (interval := intervals.get(type(aggregate)))
        and event.originator_version % interval == 0
    }
    return [
        type(aggregates[aggregate_id]).Snapshot.take(aggregates[aggregate_id])
        for aggregate_id in crossed
    ]
