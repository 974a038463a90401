"""BoundedLru: the process's one cache type (least recently used out first, optional expiry)."""

from __future__ import annotations

import threading

import pytest

from app.support.lru import BoundedLru


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_putting_beyond_the_bound_evicts_the_least_recently_used():
    cache: BoundedLru[str, int] = BoundedLru(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)

    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, 2, 3)
    assert len(cache) == 2


def test_reading_an_entry_keeps_it_over_older_ones():
    cache: BoundedLru[str, int] = BoundedLru(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.get("a")
    cache.put("c", 3)

    assert (cache.get("a"), cache.get("b")) == (1, None)


def test_putting_an_existing_key_replaces_its_value_without_growing():
    cache: BoundedLru[str, int] = BoundedLru(2)
    cache.put("a", 1)
    cache.put("a", 2)

    assert (cache.get("a"), len(cache)) == (2, 1)


def test_an_entry_expires_after_its_ttl():
    clock = FakeClock()
    cache: BoundedLru[str, bool] = BoundedLru(10, ttl=2.0, clock=clock)
    cache.put("unknown-id", True)

    clock.now += 1.9
    assert cache.get("unknown-id") is True and "unknown-id" in cache
    clock.now += 0.2
    assert cache.get("unknown-id") is None and "unknown-id" not in cache


def test_a_put_may_give_its_entry_its_own_ttl():
    clock = FakeClock()
    cache: BoundedLru[str, str] = BoundedLru(10, ttl=30.0, clock=clock)
    cache.put("known", "credential")
    cache.put("unknown", "", ttl=1.0)

    clock.now += 5.0
    assert (cache.get("known"), cache.get("unknown")) == ("credential", None)


def test_entries_without_a_ttl_never_expire():
    clock = FakeClock()
    cache: BoundedLru[str, int] = BoundedLru(10, clock=clock)
    cache.put("a", 1)

    clock.now += 1e9
    assert cache.get("a") == 1


def test_membership_does_not_mark_an_entry_used():
    cache: BoundedLru[str, int] = BoundedLru(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert "a" in cache
    cache.put("c", 3)

    assert "a" not in cache


def test_pop_forgets_a_key_and_returns_its_value():
    cache: BoundedLru[str, int] = BoundedLru(2)
    cache.put("a", 1)

    assert (cache.pop("a"), cache.pop("a"), cache.get("a")) == (1, None, None)


def test_pop_where_forgets_the_entries_a_predicate_accepts():
    cache: BoundedLru[tuple[str, int], bytes] = BoundedLru(10)
    for version in (1, 2):
        cache.put(("doomed", version), b"material")
        cache.put(("kept", version), b"material")

    cache.pop_where(lambda key, _value: key[0] == "doomed")

    assert sorted(key for key, _ in cache.items()) == [("kept", 1), ("kept", 2)]


def test_items_leave_out_expired_entries():
    clock = FakeClock()
    cache: BoundedLru[str, int] = BoundedLru(10, clock=clock)
    cache.put("lasting", 1)
    cache.put("brief", 2, ttl=1.0)
    clock.now += 2.0

    assert cache.items() == [("lasting", 1)]


def test_a_cache_must_hold_at_least_one_entry():
    with pytest.raises(ValueError):
        BoundedLru(0)


def test_threads_putting_at_once_never_exceed_the_bound():
    cache: BoundedLru[int, int] = BoundedLru(100)

    def fill(start: int) -> None:
        for n in range(start, start + 5_000):
            cache.put(n, n)
            cache.get(n - 50)

    threads = [threading.Thread(target=fill, args=(i * 5_000,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(cache) == 100
    assert all(cache.get(key) == value for key, value in cache.items())
