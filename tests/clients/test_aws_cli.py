"""The real AWS CLI (``aws kms ...``, run as a subprocess) against a running KeyLedger."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ACCOUNT_ID, REGION, Service

AWS = Path(sys.executable).parent / "aws"


class AwsCli:
    """``aws kms`` with only the test's credentials: no local config or profile leaks in."""

    def __init__(self, service: Service, home: Path) -> None:
        empty = home / "empty"
        empty.write_text("")
        self.cwd = home
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "AWS_ACCESS_KEY_ID": service.access_key_id,
            "AWS_SECRET_ACCESS_KEY": service.secret_access_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(empty),
            "AWS_SHARED_CREDENTIALS_FILE": str(empty),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_PAGER": "",
        }
        self.endpoint = service.endpoint

    def run(self, *args: str, use_env_endpoint: bool = False) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        command = [str(AWS), "kms", *args]
        if use_env_endpoint:
            env["AWS_ENDPOINT_URL_KMS"] = self.endpoint
        else:
            command += ["--endpoint-url", self.endpoint]
        return subprocess.run(
            command, env=env, cwd=self.cwd, capture_output=True, text=True, timeout=60
        )

    def ok(self, *args: str, **options: Any) -> Any:
        result = self.run(*args, "--output", "json", **options)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout) if result.stdout.strip() else None

    def text(self, *args: str) -> str:
        result = self.run(*args, "--output", "text")
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


@pytest.fixture
def aws(service: Service, tmp_path: Path) -> AwsCli:
    assert AWS.exists(), f"the AWS CLI is not installed at {AWS}"
    return AwsCli(service, tmp_path)


def test_key_lifecycle_and_encryption_round_trip_through_the_cli(aws: AwsCli, tmp_path: Path):
    created = aws.ok("create-key", "--description", "made by the aws cli")
    key_id = created["KeyMetadata"]["KeyId"]
    arn = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{key_id}"
    assert created["KeyMetadata"]["Arn"] == arn

    # AWS_ENDPOINT_URL_KMS works as well as --endpoint-url.
    described = aws.ok("describe-key", "--key-id", key_id, use_env_endpoint=True)
    assert described["KeyMetadata"]["Description"] == "made by the aws cli"
    assert described["KeyMetadata"]["KeyState"] == "Enabled"

    plaintext = secrets.token_bytes(200) + b"\x00\xff binary-safe"
    (tmp_path / "plain.bin").write_bytes(plaintext)
    blob_b64 = aws.text(
        "encrypt",
        "--key-id",
        key_id,
        "--plaintext",
        "fileb://plain.bin",
        "--encryption-context",
        "purpose=cli-test,tenant=t1",
        "--query",
        "CiphertextBlob",
    )
    (tmp_path / "blob.bin").write_bytes(base64.b64decode(blob_b64))

    decrypted_b64 = aws.text(
        "decrypt",
        "--ciphertext-blob",
        "fileb://blob.bin",
        "--encryption-context",
        "tenant=t1,purpose=cli-test",
        "--query",
        "Plaintext",
    )
    assert base64.b64decode(decrypted_b64) == plaintext

    alias = f"alias/cli-{uuid.uuid4().hex}"
    assert aws.ok("create-alias", "--alias-name", alias, "--target-key-id", key_id) is None
    aliases = aws.ok("list-aliases", "--key-id", key_id)["Aliases"]
    assert [(a["AliasName"], a["TargetKeyId"]) for a in aliases] == [(alias, key_id)]

    # The alias works as a key id for the CLI too.
    by_alias = aws.text(
        "encrypt", "--key-id", alias, "--plaintext", "fileb://plain.bin", "--query", "KeyId"
    )
    assert by_alias == arn


def test_cli_reports_the_aws_error_code_and_a_failing_exit_status(aws: AwsCli):
    missing = str(uuid.uuid4())

    result = aws.run("describe-key", "--key-id", missing)

    assert result.returncode != 0
    assert "NotFoundException" in result.stderr
    assert missing in result.stderr
    assert result.stdout == ""


def test_cli_with_a_wrong_secret_is_refused(aws: AwsCli):
    aws.env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret-" + "y" * 25

    result = aws.run("list-keys")

    assert result.returncode != 0
    assert "InvalidSignatureException" in result.stderr
