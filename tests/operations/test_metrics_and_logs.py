"""``keyledger run --workers 2`` as an operator runs it (docs/operations.md, "Metrics" and
"Logs"): every scrape of /metrics, whichever worker answers it, counts every call made so
far, and its totals only increase; each call leaves one JSON log line with its request id,
source IP, principal, operation, key, outcome and latency; and nothing in the output holds a
plaintext, a custom key store's credential or the bootstrap secret."""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from app.auth.credentials import new_access_key_id, new_secret_access_key
from tests.cli.keyledger_process import Checkout, KeyLedgerProcess, free_port, private_dir

pytestmark = pytest.mark.e2e
WORKERS = 2
SCRAPES = 40  # new connections: the kernel spreads them over the workers at random
ENCRYPT_TOTAL = re.compile(
    r'^keyledger_requests_total\{(?=[^}]*operation="Encrypt")(?=[^}]*source="kms")[^}]*\} (\S+)$',
    re.MULTILINE,
)
PROCESS_ID = re.compile(r"^keyledger_process_id (\S+)$", re.MULTILINE)
CALL_FIELDS = {
    "time",
    "request_id",
    "source_ip",
    "principal_arn",
    "operation",
    "key_arn",
    "outcome",
    "latency_ms",
}


@dataclass
class Service:
    process: KeyLedgerProcess
    endpoint: str
    access_key_id: str
    secret: str

    def kms(self) -> Any:
        """A client of its own: its connections are new ones."""
        return boto3.client(
            "kms",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret,
            config=Config(retries={"max_attempts": 1}),
        )

    def scrape(self) -> tuple[float, int]:
        """(Encrypt calls counted, the worker that answered), over a new connection."""
        text = httpx.get(self.endpoint + "/metrics", timeout=30).text
        counts = [float(value) for value in ENCRYPT_TOTAL.findall(text)]
        pid = PROCESS_ID.search(text)
        assert pid, text
        return sum(counts), int(float(pid.group(1)))

    def call_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines of calls so far (a thread writes them after the answers:
        read once the output stops growing)."""
        output, deadline = self.process.output(), time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.3)
            newer = self.process.output()
            if newer == output:
                break
            output = newer
        lines = []
        for line in output.splitlines():
            if line.startswith("{"):
                document = json.loads(line)
                if document.get("logger") == "keyledger.calls":
                    lines.append(document)
        return lines


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    with private_dir() as workdir:
        checkout = Checkout.make(workdir)
        access_key_id, secret = new_access_key_id(), new_secret_access_key()
        checkout.env |= {
            "KEYLEDGER_BOOTSTRAP_ACCESS_KEY_ID": access_key_id,
            "KEYLEDGER_BOOTSTRAP_SECRET_ACCESS_KEY": secret,
            "KEYLEDGER_LOG_FORMAT": "json",
            "KEYLEDGER_SCHEDULER_INTERVAL_SECONDS": "3600",
        }
        process = checkout.start("--workers", str(WORKERS), "--port", str(free_port()))
        try:
            endpoint = process.wait_until_serving(timeout=120)
            yield Service(process, endpoint, access_key_id, secret)
        finally:
            process.interrupt(timeout=40)


def _encrypt_calls(service: Service, key_id: str, count: int) -> list[str]:
    """``count`` Encrypt calls, each on a new client; their request ids."""
    request_ids = []
    for n in range(count):
        answer = service.kms().encrypt(KeyId=key_id, Plaintext=f"call {n}".encode())
        request_ids.append(answer["ResponseMetadata"]["RequestId"])
    return request_ids


def _scrapes(service: Service) -> list[tuple[float, int]]:
    return [service.scrape() for _ in range(SCRAPES)]


def test_metrics_count_every_call_whichever_worker_answers_and_only_increase(
    service: Service,
) -> None:
    key_id = service.kms().create_key()["KeyMetadata"]["KeyId"]
    _encrypt_calls(service, key_id, 25)
    first = _scrapes(service)
    assert {total for total, _ in first} == {25.0}, first
    assert len({pid for _, pid in first}) == WORKERS, "one worker answered every scrape"

    _encrypt_calls(service, key_id, 15)
    second = _scrapes(service)
    assert {total for total, _ in second} == {40.0}, second
    totals = [total for total, _ in first + second]
    assert totals == sorted(totals)


def test_each_call_leaves_one_json_line_with_who_what_which_key_and_how_it_ended(
    service: Service,
) -> None:
    kms = service.kms()
    key = kms.create_key()["KeyMetadata"]
    request_ids = _encrypt_calls(service, key["KeyId"], 6)
    with pytest.raises(ClientError) as refused:
        kms.describe_key(KeyId="alias/no-such-key")
    refused_id = refused.value.response["ResponseMetadata"]["RequestId"]

    lines = {line["request_id"]: line for line in service.call_lines()}
    counts = [line["request_id"] for line in service.call_lines()]
    for request_id in [*request_ids, refused_id]:
        assert counts.count(request_id) == 1, request_id
        assert set(lines[request_id]) >= CALL_FIELDS, lines[request_id]
    encrypt = lines[request_ids[0]]
    assert encrypt["operation"] == "Encrypt"
    assert encrypt["outcome"] == "Success"
    assert encrypt["key_arn"] == key["Arn"]
    assert encrypt["principal_arn"].startswith("arn:aws:iam::")
    assert encrypt["source_ip"] == "127.0.0.1"
    assert encrypt["latency_ms"] > 0
    denied = lines[refused_id]
    assert (denied["operation"], denied["outcome"]) == ("DescribeKey", "NotFoundException")


def test_no_plaintext_credential_or_bootstrap_secret_reaches_the_logs(service: Service) -> None:
    kms = service.kms()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    plaintext = os.urandom(24).hex().encode()
    blob = kms.encrypt(KeyId=key_id, Plaintext=plaintext)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == plaintext
    xks_secret = base64.b64encode(os.urandom(32)).decode()
    try:  # whether the store's proxy answers or not, the credential went through the call
        kms.create_custom_key_store(
            CustomKeyStoreName=f"store-{os.urandom(4).hex()}",
            CustomKeyStoreType="EXTERNAL_KEY_STORE",
            XksProxyUriEndpoint="https://xks.example.com",
            XksProxyUriPath="/kms/xks/v1",
            XksProxyConnectivity="PUBLIC_ENDPOINT",
            XksProxyAuthenticationCredential={
                "AccessKeyId": "ABCDEFGHIJKLMNOPQRST2345",
                "RawSecretAccessKey": xks_secret,
            },
        )
    except ClientError as error:
        assert error.response["Error"]["Code"] == "XksProxyUriUnreachableException"
    operations = {line["operation"] for line in service.call_lines()}
    assert {"Encrypt", "Decrypt", "CreateCustomKeyStore"} <= operations

    output = service.process.output()
    for secret in (plaintext, xks_secret.encode(), service.secret.encode()):
        for shown in (secret, base64.b64encode(secret)):
            assert shown.decode() not in output
    assert base64.b64encode(blob).decode() not in output


def test_the_grafana_dashboard_reads_only_metrics_the_service_exports(service: Service) -> None:
    kms = service.kms()
    kms.encrypt(KeyId=kms.create_key()["KeyMetadata"]["KeyId"], Plaintext=b"x")
    exported = set(re.findall(r"^(keyledger_\w+)", _scrape_text(service), re.MULTILINE))
    dashboard = (Path(__file__).parents[2] / "docs" / "grafana" / "keyledger.json").read_text()
    used = set(re.findall(r"keyledger_\w+", dashboard)) - {"keyledger"}
    assert used, "the dashboard reads no metric"
    assert used <= exported, used - exported


def _scrape_text(service: Service) -> str:
    return httpx.get(service.endpoint + "/metrics", timeout=30).text


CACHE_LOOKUPS = re.compile(r"^keyledger_cache_lookups_total\{([^}]*)\} (\S+)$", re.MULTILINE)
COUNTED_CACHES = ("aggregates", "credentials", "principals", "wrapping_keys", "materials")


def _cache_lookups(service: Service) -> dict[tuple[str, str], float]:
    """{(cache, result): lookups} summed over the workers, from one scrape."""
    found: dict[tuple[str, str], float] = {}
    for labels, value in CACHE_LOOKUPS.findall(_scrape_text(service)):
        named = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        series = (named["cache"], named["result"])
        found[series] = found.get(series, 0.0) + float(value)
    return found


def test_every_cache_reports_its_hits_and_misses_and_they_move_with_use(
    service: Service,
) -> None:
    before = _cache_lookups(service)
    assert {(c, r) for c in COUNTED_CACHES for r in ("hit", "miss")} <= set(before), before

    kms = service.kms()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    for n in range(20):  # new clients, new connections: both workers serve some of them
        client = service.kms()
        blob = client.encrypt(KeyId=key_id, Plaintext=f"call {n}".encode())["CiphertextBlob"]
        client.decrypt(CiphertextBlob=blob)
    after = _cache_lookups(service)

    def lookups(counts: dict[tuple[str, str], float], cache: str) -> float:
        return counts.get((cache, "hit"), 0.0) + counts.get((cache, "miss"), 0.0)

    for cache in ("aggregates", "credentials", "wrapping_keys", "materials"):
        assert lookups(after, cache) > lookups(before, cache), cache
    # Each of the 41 calls authenticated against the cached credential (after each
    # worker's first read of it), and each of the 40 uses found the key's material.
    assert after[("credentials", "hit")] - before[("credentials", "hit")] >= 39
    assert lookups(after, "materials") - lookups(before, "materials") >= 40
    assert all(after[series] >= count for series, count in before.items())
