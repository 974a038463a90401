"""The in-memory event store is a twin of the PostgreSQL one: the same outcomes, asked
the same way (app/infrastructure/memory_store.py).

Each contract test runs on both stores: ``memory`` (MemoryEventStore over a Ledger in
memory) and ``postgres`` (AsyncEventStore and keyledger_append on the embedded server).
Two store instances over one Ledger are two writers (processes) on one database. The
property at the end runs random interleavings of writers on both and compares them.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg.errors
import pytest
from eventsourcing.persistence import IntegrityError as LibraryIntegrityError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.infrastructure.event_store import AsyncEventStore
from app.infrastructure.ledger import Ledger, project_fast
from app.infrastructure.memory_store import (
    EVENT_STORE_ENV,
    MemoryEventStore,
    MemoryRecorder,
    VersionConflict,
    event_store_mode,
    ledger_env,
    open_event_store,
)
from domain.actors import Actor
from domain.keys import Key, KeyMaterial

T = TypeVar("T")
NOW = datetime(2026, 1, 1, tzinfo=UTC)
USED, DISABLED = "Used", "Disabled"


# --- the two stores ------------------------------------------------------------------
@dataclass
class Backend:
    """One event store (database) and a way to open writers on it."""

    name: str
    ledger: Ledger
    new_store: Callable[[], Any]
    opened: list[Any] = field(default_factory=list)

    def run(self, scenario: Callable[..., Awaitable[T]], writers: int = 1) -> T:
        """Run ``scenario(*stores)`` on a fresh event loop with ``writers`` stores."""

        async def main() -> T:
            stores = [self.new_store() for _ in range(writers)]
            try:
                return await scenario(*stores)
            finally:
                for store in stores:
                    await store.close()

        return asyncio.run(main())


def memory_backend() -> Backend:
    ledger = Ledger(env=ledger_env({}, {EVENT_STORE_ENV: "memory"}))
    return Backend("memory", ledger, lambda: open_event_store(ledger, ""))


@pytest.fixture(scope="module")
def postgres_backend() -> Iterator[Backend]:
    from tests.support.databases import migrated_ledger

    with migrated_ledger() as (url, ledger):
        yield Backend("postgres", ledger, lambda: open_event_store(ledger, url))


@pytest.fixture(
    params=[
        pytest.param("memory", marks=pytest.mark.memory),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return memory_backend()
    backend: Backend = request.getfixturevalue("postgres_backend")
    return backend


# --- keys and their events ------------------------------------------------------------
def new_key(key_id: uuid.UUID | None = None) -> Key:
    key_id = key_id or uuid.uuid4()
    return Key.create(
        key_id=key_id,
        now=NOW,
        actor=Actor(request_id="create"),
        arn=f"arn:aws:kms:us-east-1:111122223333:key/{key_id}",
        account_id="111122223333",
        region="us-east-1",
        description="",
        key_spec="SYMMETRIC_DEFAULT",
        key_usage="ENCRYPT_DECRYPT",
        origin="AWS_KMS",
        key_manager="CUSTOMER",
        policy="{}",
        tags={},
        material=KeyMaterial(1, "1" * 64, b"wrapped", NOW, None),
    )


def use(key: Key, request_id: str = "r", times: int = 1) -> Key:
    for n in range(times):
        key.record_use(
            operation="Encrypt",
            now=NOW,
            actor=Actor(request_id=f"{request_id}{n}"),
            material_version=1,
            encryption_context=None,
        )
    return key


def stream(found: dict[uuid.UUID, list[Any]], key_id: uuid.UUID) -> list[tuple[int, str]]:
    return [(e.originator_version, type(e).__name__) for e in found.get(key_id, [])]


async def committed_key(store: Any) -> Key:
    """A key whose Created event is stored (version 1), its events collected."""
    key = new_key()
    await store.insert(key.collect_events())
    return key


# --- the contract -----------------------------------------------------------------------
@pytest.mark.memory
def test_the_setting_selects_the_store() -> None:
    assert event_store_mode({}) == "postgres"
    assert event_store_mode({EVENT_STORE_ENV: "memory"}) == "memory"
    with pytest.raises(ValueError):
        event_store_mode({EVENT_STORE_ENV: "sqlite"})
    in_memory = Ledger(env=ledger_env({}, {EVENT_STORE_ENV: "memory"}))
    assert isinstance(in_memory.recorder, MemoryRecorder)
    assert isinstance(open_event_store(in_memory, ""), MemoryEventStore)


def test_plain_appends_return_ids_in_batch_order_and_heads(backend: Backend) -> None:
    async def scenario(store: Any) -> None:
        expected = {"memory": MemoryEventStore, "postgres": AsyncEventStore}[backend.name]
        assert type(store) is expected
        first, second = use(new_key(), times=2), new_key()
        unknown = uuid.uuid4()
        ids, heads = await store.insert([*first.collect_events(), *second.collect_events()])
        assert len(ids) == 4 and ids == sorted(set(ids))
        assert heads == {first.id: 3, second.id: 1}
        found = await store.events_after_many({first.id: 0, second.id: 0, unknown: 0})
        assert stream(found, first.id) == [(1, "Created"), (2, USED), (3, USED)]
        assert stream(found, second.id) == [(1, "Created")]
        assert unknown not in found
        later = await store.events_after_many({first.id: 1, second.id: 1})
        assert stream(later, first.id) == [(2, USED), (3, USED)]
        assert second.id not in later
        (loaded,) = [project_fast(None, found[first.id])]
        assert (loaded.version, loaded.state, loaded.last_used_request_id) == (3, "Enabled", "r1")

    backend.run(scenario)


def test_two_writers_appending_uses_to_one_key_are_renumbered(backend: Backend) -> None:
    async def scenario(one: Any, other: Any) -> None:
        key = await committed_key(one)
        mine, theirs = copy.deepcopy(key), copy.deepcopy(key)
        assert (await one.insert(use(mine, "a").collect_events()))[1] == {key.id: 2}
        # Read at version 1 too: its two uses follow the other writer's instead of failing.
        _, heads = await other.insert(use(theirs, "b", times=2).collect_events())
        assert heads == {key.id: 4}
        found = await one.events_after_many({key.id: 0})
        assert stream(found, key.id) == [(1, "Created"), (2, USED), (3, USED), (4, USED)]
        assert [e.request_id for e in found[key.id][1:]] == ["a0", "b0", "b1"]

    backend.run(scenario, writers=2)


def test_a_state_change_after_another_writers_uses_is_renumbered(backend: Backend) -> None:
    async def scenario(one: Any, other: Any) -> None:
        key = await committed_key(one)
        mine, theirs = copy.deepcopy(key), copy.deepcopy(key)
        await one.insert(use(mine, "a", times=2).collect_events())
        theirs.disable(now=NOW, actor=Actor())
        assert (await other.insert(theirs.collect_events()))[1] == {key.id: 4}
        found = await one.events_after_many({key.id: 0})
        assert stream(found, key.id)[-1] == (4, DISABLED)

    backend.run(scenario, writers=2)


@pytest.mark.parametrize("second", ["use", "disable"])
def test_anything_racing_a_state_change_is_a_conflict_and_appends_nothing(
    backend: Backend, second: str
) -> None:
    async def scenario(one: Any, other: Any) -> None:
        key = await committed_key(one)
        mine, theirs = copy.deepcopy(key), copy.deepcopy(key)
        mine.disable(now=NOW, actor=Actor())
        await one.insert(mine.collect_events())
        if second == "use":
            use(theirs, "late")
        else:
            theirs.disable(now=NOW, actor=Actor())
        bystander = new_key()  # in the same batch: all or nothing
        with pytest.raises(psycopg.errors.IntegrityError) as raised:
            await other.insert([*theirs.collect_events(), *bystander.collect_events()])
        assert isinstance(raised.value, psycopg.errors.UniqueViolation)
        found = await one.events_after_many({key.id: 0, bystander.id: 0})
        assert stream(found, key.id) == [(1, "Created"), (2, DISABLED)]
        assert bystander.id not in found

    backend.run(scenario, writers=2)


def test_a_new_aggregate_whose_id_is_taken_conflicts(backend: Backend) -> None:
    async def scenario(one: Any, other: Any) -> None:
        key = await committed_key(one)
        with pytest.raises(psycopg.errors.IntegrityError):
            await other.insert(new_key(key.id).collect_events())

    backend.run(scenario, writers=2)


def test_notification_ids_increase_in_commit_order_and_the_library_reads_them(
    backend: Backend,
) -> None:
    async def scenario(one: Any, other: Any) -> list[tuple[int, uuid.UUID, int]]:
        key = await committed_key(one)
        committed: list[tuple[int, uuid.UUID, int]] = []
        for n in range(6):
            writer = (one, other)[n % 2]
            copy_of = copy.deepcopy(key)  # every writer read version 1
            events = use(copy_of, f"w{n}").collect_events()
            ids, heads = await writer.insert(events)
            committed.append((ids[0], key.id, heads[key.id]))
        return committed

    committed = backend.run(scenario, writers=2)
    ids = [n for n, _, _ in committed]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [version for _, _, version in committed] == [2, 3, 4, 5, 6, 7]
    # The library's readers (projections, subscriptions) see the same rows.
    notifications = backend.ledger.recorder.select_notifications(start=ids[0], limit=100)
    seen = {n.id: (n.originator_id, n.originator_version) for n in notifications}
    assert all(seen[n] == (key_id, version) for n, key_id, version in committed)


def test_snapshots_round_trip_and_the_latest_wins(backend: Backend) -> None:
    async def scenario(store: Any) -> None:
        key = use(new_key(), times=2)
        key.tag(now=NOW, actor=Actor(), tags={"team": "ledger"})
        await store.insert(key.collect_events())
        first = Key.Snapshot.take(key)  # type: ignore[attr-defined]
        await store.put_snapshots([first])
        await store.put_snapshots([first])  # again: no error, nothing new
        other = uuid.uuid4()
        latest = await store.latest_snapshots([key.id, other])
        assert set(latest) == {key.id}
        restored = latest[key.id].mutate(None)
        assert restored.version == key.version == 4
        assert (restored.tags, restored.last_used_request_id) == ({"team": "ledger"}, "r1")
        assert restored.materials == key.materials
        use(key, "later")
        await store.insert(key.collect_events())
        await store.put_snapshots([Key.Snapshot.take(key)])  # type: ignore[attr-defined]
        newest = (await store.latest_snapshots([key.id]))[key.id]
        assert newest.originator_version == 5

    backend.run(scenario)


@pytest.mark.memory
def test_the_memory_conflict_is_what_the_writer_and_the_library_catch() -> None:
    assert issubclass(VersionConflict, psycopg.errors.IntegrityError)  # LedgerWriter
    assert issubclass(VersionConflict, LibraryIntegrityError)  # Application.save


@pytest.mark.memory
def test_the_library_path_settles_versions_in_memory_too() -> None:
    """Application.save on a Ledger in memory settles as LedgerRecorder does, and the
    aggregate follows the settled version (Ledger._record)."""
    ledger = Ledger(env=ledger_env({}, {EVENT_STORE_ENV: "memory"}))
    key = new_key()
    ledger.save(key)
    mine, theirs = copy.deepcopy(key), copy.deepcopy(key)
    ledger.save(use(mine, "a"))
    ledger.save(use(theirs, "b"))
    assert theirs.version == 3
    theirs.disable(now=NOW, actor=Actor())
    ledger.save(theirs)
    use(mine, "too late")
    with pytest.raises(LibraryIntegrityError):
        ledger.save(mine)
    assert ledger.repository.get(key.id).version == 4


# --- random interleavings -------------------------------------------------------------
OPERATIONS = ["use", "use twice", "disable", "enable", "reload"]
programs = st.lists(
    st.tuples(st.integers(min_value=0, max_value=2), st.sampled_from(OPERATIONS)),
    min_size=1,
    max_size=14,
)


async def run_program(stores: list[Any], program: list[tuple[int, str]]) -> dict[str, Any]:
    """Writers (one per store) act on one key from their own copy of it, as LedgerWriter
    does: append, follow the settled head, reload after a conflict."""
    key = await committed_key(stores[0])
    copies = [copy.deepcopy(key) for _ in stores]
    bases = [1 for _ in stores]  # the version each writer's copy was read at
    outcomes: list[Any] = []
    expected_conflicts: list[bool] = []
    for writer, operation in program:
        store, mine = stores[writer], copies[writer]
        if operation == "use":
            use(mine, "u")
        elif operation == "use twice":
            use(mine, "u", times=2)
        elif operation == "disable":
            mine.disable(now=NOW, actor=Actor())
        elif operation == "enable":
            mine.enable(now=NOW, actor=Actor())
        events = mine.collect_events()
        if operation != "reload" and events:
            before = await store.events_after_many({key.id: bases[writer]})
            expected_conflicts.append(any(t != USED for _, t in stream(before, key.id)))
            try:
                _, heads = await store.insert(events)
            except psycopg.errors.IntegrityError:
                outcomes.append("conflict")
                operation = "reload"
            else:
                mine.version = heads[key.id]  # as LedgerWriter._committed
                bases[writer] = heads[key.id]
                outcomes.append(heads[key.id])
        if operation == "reload":
            found = await store.events_after_many({key.id: 0})
            copies[writer] = project_fast(None, found[key.id])
            bases[writer] = copies[writer].version
    final = await stores[0].events_after_many({key.id: 0})
    return {
        "outcomes": outcomes,
        "expected_conflicts": expected_conflicts,
        "stream": stream(final, key.id),
        "state": project_fast(None, final[key.id]).state,
    }


def check_invariants(result: dict[str, Any]) -> None:
    versions = [v for v, _ in result["stream"]]
    assert versions == list(range(1, len(versions) + 1))  # contiguous, each once
    conflicts = [outcome == "conflict" for outcome in result["outcomes"]]
    # A writer's append fails exactly when a state change was stored after its read.
    assert conflicts == result["expected_conflicts"]
    appended = sum(1 for _, topic in result["stream"][1:])
    assert appended >= sum(1 for c in conflicts if not c)


@pytest.mark.memory
@settings(max_examples=200, deadline=None)
@given(program=programs)
def test_random_interleavings_in_memory_keep_the_rule(program: list[tuple[int, str]]) -> None:
    backend = memory_backend()
    check_invariants(backend.run(lambda *s: run_program(list(s), program), writers=3))


@pytest.mark.postgres
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(program=programs)
def test_random_interleavings_give_the_same_outcomes_on_both_stores(
    postgres_backend: Backend, program: list[tuple[int, str]]
) -> None:
    in_memory = memory_backend().run(lambda *s: run_program(list(s), program), writers=3)
    on_postgres = postgres_backend.run(lambda *s: run_program(list(s), program), writers=3)
    check_invariants(on_postgres)
    assert in_memory == on_postgres
