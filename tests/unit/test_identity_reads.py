"""Identity reads on the event loop (app/auth/credential_reads.py CachedReads, ReadSlots): in
threads,
one per name at a time, bounded in number, with what was not found remembered briefly.

The reads here are plain functions that wait on an event: what is specified is how the
loop schedules them, whatever they read."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest

from app.auth.credential_reads import CachedReads, ReadSlots
from domain.errors import ThrottlingError


class Reads:
    """A read that counts its calls, runs in a thread and waits until released."""

    def __init__(self, found: dict[str, str] | None = None) -> None:
        self.found = found or {}
        self.calls: Counter[str] = Counter()
        self.running = 0
        self.most_at_once = 0
        self.threads: set[int] = set()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, name: str) -> str | None:
        with self._lock:
            self.calls[name] += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.threads.add(threading.get_ident())
        self.release.wait(10)
        with self._lock:
            self.running -= 1
        return self.found.get(name)


def reads_of(read: Reads, slots: ReadSlots | None = None) -> CachedReads[str]:
    return CachedReads(read, slots or ReadSlots(), ttl=30.0, miss_ttl=2.0)


async def released_soon(read: Reads, *tasks: asyncio.Future[object]) -> list[object]:
    await asyncio.sleep(0.2)
    read.release.set()
    return await asyncio.gather(*tasks, return_exceptions=True)


def test_concurrent_look_ups_of_one_unknown_name_share_one_read():
    read = Reads()
    cached = reads_of(read)

    async def scenario() -> list[object]:
        return await released_soon(
            read, *(asyncio.ensure_future(cached.get("AKLGX")) for _ in range(50))
        )

    assert asyncio.run(scenario()) == [None] * 50
    assert read.calls["AKLGX"] == 1


def test_a_read_runs_in_a_thread_while_the_loop_goes_on():
    read = Reads({"AKLGKNOWN": "credential"})
    cached = reads_of(read)

    async def scenario() -> tuple[float, object]:
        lookup = asyncio.ensure_future(cached.get("AKLGKNOWN"))
        started = time.monotonic()
        await asyncio.sleep(0.05)  # the loop runs while the read waits
        lag = time.monotonic() - started
        read.release.set()
        return lag, await lookup

    lag, found = asyncio.run(scenario())
    assert found == "credential" and lag < 0.5
    assert threading.get_ident() not in read.threads


def test_a_name_not_found_is_remembered_and_not_read_again():
    read = Reads()
    read.release.set()
    cached = reads_of(read)

    async def scenario() -> None:
        for _ in range(100):
            assert await cached.get("AKLGUNKNOWN") is None

    asyncio.run(scenario())
    assert read.calls["AKLGUNKNOWN"] == 1 and cached.known_missing("AKLGUNKNOWN")


def test_no_more_reads_run_at_once_than_the_slots_allow():
    read = Reads()
    cached = reads_of(read, ReadSlots(concurrent=3, queued=100))

    async def scenario() -> None:
        await released_soon(
            read, *(asyncio.ensure_future(cached.get(f"AKLG{n}")) for n in range(40))
        )

    asyncio.run(scenario())
    assert read.most_at_once == 3 and sum(read.calls.values()) == 40


def test_reads_beyond_the_queue_are_refused_as_throttling():
    read = Reads()
    cached = reads_of(read, ReadSlots(concurrent=2, queued=10))

    async def scenario() -> list[object]:
        return await released_soon(
            read, *(asyncio.ensure_future(cached.get(f"AKLG{n}")) for n in range(25))
        )

    outcomes = asyncio.run(scenario())
    assert sum(isinstance(o, ThrottlingError) for o in outcomes) == 15
    assert sum(read.calls.values()) == 10


def test_a_caller_that_goes_away_does_not_cancel_the_read_others_wait_for():
    read = Reads({"AKLGKNOWN": "credential"})
    cached = reads_of(read)

    async def scenario() -> object:
        impatient = asyncio.ensure_future(cached.get("AKLGKNOWN"))
        patient = asyncio.ensure_future(cached.get("AKLGKNOWN"))
        await asyncio.sleep(0.05)
        impatient.cancel()
        read.release.set()
        return await patient

    assert asyncio.run(scenario()) == "credential"
    assert read.calls["AKLGKNOWN"] == 1 and cached.cached("AKLGKNOWN") == "credential"


def test_a_synchronous_read_on_the_event_loop_is_refused():
    cached = reads_of(Reads())

    async def scenario() -> None:
        cached.get_sync("AKLGX")

    with pytest.raises(RuntimeError, match="block the event loop"):
        asyncio.run(scenario())
