"""The use-case tier: the real use cases (app.usecases) on the in-memory ledger, wired by
app.bootstrap.InMemoryRuntime; no PostgreSQL, no server (marked memory by tests/conftest.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from app.auth.credentials import Caller
from app.bootstrap import InMemoryRuntime
from app.infrastructure.memory_store import MemoryEventStore
from app.settings import load_settings
from app.usecases.keys import CreateKeyRequest
from domain.keys import Key

T = TypeVar("T")
ACCOUNT_ID = "111122223333"
REGION = "us-east-1"


def call(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a use case from the test's thread (the writer runs on its own loop thread)."""
    return asyncio.run(coroutine)


@pytest.fixture
def runtime() -> Iterator[InMemoryRuntime]:
    settings = load_settings(
        test_clock=True, default_account_id=ACCOUNT_ID, database_url="postgresql://nowhere/none"
    )
    runtime = InMemoryRuntime.build(settings)
    assert isinstance(runtime.writer.store, MemoryEventStore)
    runtime.start()
    runtime.bootstrap()
    yield runtime
    runtime.stop()


def caller_for(principal_arn: str, region: str = REGION) -> Caller:
    return Caller(
        account_id=principal_arn.split(":")[4],
        principal_arn=principal_arn,
        access_key_id="AKLGUSECASETESTS0001",
        region=region,
    )


@pytest.fixture
def admin(runtime: InMemoryRuntime) -> Caller:
    """The default account's administrator (AdministratorAccess, as bootstrapped)."""
    return caller_for(f"arn:aws:iam::{ACCOUNT_ID}:user/admin")


@pytest.fixture
def symmetric_key(runtime: InMemoryRuntime, admin: Caller) -> str:
    """A new symmetric encryption key."""
    return call(runtime.service.keys.create_key(admin, CreateKeyRequest())).key_id


def used_operations(runtime: InMemoryRuntime, key_id: str) -> list[str]:
    """The operations of the key's Used events, read from the ledger, oldest first."""
    events = runtime.ledger.history(uuid.UUID(key_id))
    return [event.operation for event in events if isinstance(event, Key.Used)]
