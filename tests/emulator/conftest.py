"""An emulator-mode KeyLedger of its own (docs/emulator.md), reset between tests as moto's
server mode does, and clients signed as moto's and LocalStack's test suites sign."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.conftest import REGION, Service, running_service

MOTO_ACCESS_KEY_ID = "FOOBARKEY"  # moto's decorators' fake credentials
LOCALSTACK_ACCESS_KEY_ID = "test"  # LocalStack's default account
LOCALSTACK_ACCOUNT_KEY_ID = "000000000002"  # LocalStack: a 12-digit key id is the account


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("emulator"), emulator=True) as service:
        yield service


@pytest.fixture(autouse=True)
def reset_between_tests(emulator: Service) -> Iterator[None]:
    """moto's ServerModeMockAWS.reset(): POST /moto-api/reset before each test."""
    response = httpx.post(f"{emulator.endpoint}/moto-api/reset")
    assert response.status_code == 200, response.text
    yield


def emulated_client(service: Service, access_key_id: str, name: str = "kms", secret: str = "test"):  # type: ignore[no-untyped-def]
    """A client configured as a moto or LocalStack suite configures it, but for the
    endpoint (AWS_ENDPOINT_URL)."""
    return boto3.client(
        name,
        endpoint_url=service.endpoint,
        region_name=REGION,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture
def moto_kms(emulator: Service):  # type: ignore[no-untyped-def]
    return emulated_client(emulator, MOTO_ACCESS_KEY_ID, secret="FOOBARSECRET")


@pytest.fixture
def localstack_kms(emulator: Service):  # type: ignore[no-untyped-def]
    return emulated_client(emulator, LOCALSTACK_ACCESS_KEY_ID)


def data_dir(service: Service) -> Path:
    return service.log_path.parent
