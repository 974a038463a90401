"""GET /v1/keys/{key}/events pages by keyset: a page reads only its own events.

Before, every page re-read the key's whole history (1.2 s a page at 65k events) and cut
the page out in Python. Now the store is asked for the events after the page token, one
more than the page (``originator_version > v ORDER BY originator_version LIMIT n``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from app.auth.credentials import Caller
from tests.api.test_rest_api import RestClient, assert_error
from tests.conftest import ACCOUNT_ID, REGION, Service

USES = 300
PAGE = 37
ADMIN = Caller(ACCOUNT_ID, f"arn:aws:iam::{ACCOUNT_ID}:user/admin", "AKLGTEST", REGION)


@pytest.fixture
def rest(service: Service) -> Iterator[RestClient]:
    client = RestClient(service, service.access_key_id, service.secret_access_key)
    yield client
    client.http.close()


@pytest.fixture
def busy_key(service: Service, rest: RestClient) -> str:
    """A key with a few hundred events (its uses)."""
    key_id = str(rest.create_key(description="busy")["key_id"])
    crypto = service.runtime.service.crypto

    async def use() -> None:
        for _ in range(USES // 100):
            await asyncio.gather(*(crypto.encrypt(ADMIN, key_id, b"x", {}) for _ in range(100)))

    asyncio.run(use())
    return key_id


@pytest.fixture
def reads(service: Service, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every read of a key's stream from the event store: its bounds and rows returned."""
    recorder = service.runtime.ledger.recorder
    select_events = recorder.select_events
    seen: list[dict[str, Any]] = []

    def recording(originator_id: Any, **bounds: Any) -> Any:
        found = select_events(originator_id, **bounds)
        seen.append({"originator_id": originator_id, **bounds, "rows": len(found)})
        return found

    monkeypatch.setattr(recorder, "select_events", recording)
    return seen


def test_each_page_of_a_keys_events_reads_only_that_page_and_pages_are_contiguous(
    service: Service, rest: RestClient, busy_key: str, reads: list[dict[str, Any]]
) -> None:
    path = f"/v1/keys/{busy_key}/events"
    versions: list[int] = []
    after: int | None = 0
    while after is not None:
        reads.clear()
        answer = rest.get(path, params={"limit": PAGE, "after_version": after})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        page = [event["version"] for event in body["events"]]
        assert page == list(range(after + 1, after + 1 + len(page)))  # contiguous
        (read,) = [r for r in reads if r["originator_id"] == uuid.UUID(busy_key)]
        assert read["gt"] == after and read["limit"] == PAGE + 1  # keyset, bounded
        assert read["rows"] <= PAGE + 1
        versions += page
        after = body["next_after_version"]
        assert body["truncated"] is (after is not None)

    stored = [e.originator_version for e in service.runtime.ledger.events.get(uuid.UUID(busy_key))]
    assert versions == stored and len(stored) > USES  # complete: Created, then every use


@pytest.fixture
def key_id(rest: RestClient) -> str:
    return str(rest.create_key(description="paged")["key_id"])


def test_a_page_token_beyond_any_version_is_refused_with_a_400_validation_error(
    rest: RestClient, key_id: str
) -> None:
    """A version is a bigint: a larger token is no position (before: an empty 200)."""
    answer = rest.get(f"/v1/keys/{key_id}/events", params={"after_version": str(2**63)})
    body = assert_error(answer, 400, "ValidationException")
    assert "after_version" in body["message"]


@pytest.mark.parametrize("token", ["garbage", "1\x00", "-1", "1e3", "9" * 5000])
def test_a_malformed_page_token_is_refused_with_a_400_validation_error(
    rest: RestClient, key_id: str, token: str
) -> None:
    """Kept from before the keyset paging (these were refused already): never a 500."""
    answer = rest.get(f"/v1/keys/{key_id}/events", params={"after_version": token})
    body = assert_error(answer, 400, "ValidationException")
    assert "after_version" in body["message"]
