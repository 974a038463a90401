"""The production process model end to end: ``keyledger run --workers 2`` (supervisor,
two workers with lifespan on and the writer on each HTTP loop, the audit projection and the
Merkle log in a process of its own, checkpoints signed by one worker, embedded PostgreSQL in
a temporary data dir), driven through boto3."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.cli.keyledger_process import Checkout, free_port, private_dir
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def workdir() -> Iterator[Path]:
    with private_dir() as path:
        yield path


def test_encrypt_and_decrypt_through_two_workers_land_in_the_audit_trail(workdir: Path) -> None:
    checkout = Checkout.make(workdir)
    process = checkout.start("--workers", "2", "--port", str(free_port()))
    try:
        endpoint = process.wait_until_serving(timeout=90)
        kms = checkout.kms(endpoint)
        key = kms.create_key(Description="e2e")["KeyMetadata"]
        blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"end to end")["CiphertextBlob"]
        # Several calls, so that both workers are likely to answer some.
        for _ in range(4):
            answer = kms.decrypt(CiphertextBlob=blob)
            assert (answer["Plaintext"], answer["KeyId"]) == (b"end to end", key["Arn"])

        credentials = kms._request_signer._credentials  # the administrator's pair
        trail = boto3.client(
            "cloudtrail",
            endpoint_url=endpoint,
            region_name=kms.meta.region_name,
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key,
            config=Config(retries={"max_attempts": 1}),
        )

        def recorded() -> set[str]:
            events = trail.lookup_events(
                LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": key["Arn"]}]
            )["Events"]
            return {e["EventName"] for e in events}

        assert eventually(
            lambda: {"CreateKey", "Encrypt", "Decrypt"} <= recorded(), timeout=30, poll=0.2
        ), (recorded(), process.output())

        def under_a_signed_checkpoint() -> bool:
            # The projection process builds the Merkle log; one worker signs its head.
            metrics = httpx.get(endpoint + "/metrics", timeout=10).text
            assert "keyledger_ledger_verification_failed 0" in metrics, metrics
            return "keyledger_ledger_checkpoint_lag_seconds 0.0\n" in metrics

        assert eventually(under_a_signed_checkpoint, timeout=30, poll=0.2), process.output()
    finally:
        status = process.interrupt(timeout=40, signum=signal.SIGTERM)
    assert status == 0, process.output()
