"""Service configuration, read from `KEYLEDGER_*` environment variables.

Every field can be set from the environment (``KEYLEDGER_PORT=9000``) or passed to
`load_settings` (``load_settings(port=9000)``); explicit overrides win over the
environment. ``KEYLEDGER_REGIONS`` accepts a JSON list (``["us-east-1","eu-west-1"]``)
or a comma-separated list (``us-east-1,eu-west-1``).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from domain import xks
from domain.quotas import QUOTA_NAMES

ROOT_KEY_BYTES = 32

#: The AWS commercial regions served by default.
DEFAULT_REGIONS: tuple[str, ...] = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "sa-east-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-south-1",
    "ap-south-2",
    "ap-east-1",
    "me-south-1",
    "me-central-1",
    "il-central-1",
    "af-south-1",
)

LOG_LEVELS = frozenset({"critical", "error", "warning", "info", "debug", "trace"})

_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+-\d+$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_XKS_KEY_ID_RE = re.compile(r"[A-Za-z0-9]{4,128}")
_PRINCIPAL_RE = re.compile(r"arn:[a-z0-9-]+:iam::\d{12}:\S+")
# AWS's XksProxyUriEndpoint (botocore's model): HTTPS, a host name, no port, no path.
_XKS_ENDPOINT_RE = re.compile(r"https://[a-zA-Z0-9.-]+")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container's cpuset sets
    it), at least one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _comma_separated(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _reachable_base(url: str) -> bool:
    """An XKS proxy base URL: HTTPS, or plain HTTP to a loopback address (never over a
    network); no path, query or credentials."""
    parts = urlsplit(url)
    if not parts.hostname or parts.username or parts.query or parts.path not in ("", "/"):
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def _decode_root_key(text: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("root key must be base64 of 32 bytes") from exc
    if len(raw) != ROOT_KEY_BYTES:
        raise ValueError(f"root key must be base64 of 32 bytes, got {len(raw)} bytes")
    return raw


class Settings(BaseSettings):
    """KeyLedger settings. Environment variables are ``KEYLEDGER_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="KEYLEDGER_",
        case_sensitive=False,
        extra="forbid",
        validate_default=True,
        # Validation errors must never echo secrets (root key, secret access key).
        hide_input_in_errors=True,
    )

    #: libpq URL of the event store; None runs an embedded PostgreSQL in ``data_dir/pgdata``.
    database_url: str | None = None
    data_dir: Path = Path(".keyledger")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    #: base64 of 32 random bytes (e.g. ``openssl rand -base64 32``).
    root_key: SecretStr | None = None
    #: A file holding the root key: base64 text or exactly 32 raw bytes.
    root_key_file: Path | None = None
    #: Where the root key lives (docs/key-custody.md): ``file`` (root_key / root_key_file,
    #: or the embedded development key); ``pkcs11`` (a non-extractable key in a PKCS#11
    #: token, an HSM: the pkcs11_* settings below; the key never enters this process).
    #: ``shamir`` (sealed in the database under an unseal key split into shares by
    #: ``keyledger operator init``: the service starts sealed).
    root_key_provider: Literal["file", "pkcs11", "shamir"] = "file"
    # --- the PKCS#11 (HSM) root key (app/infrastructure/pkcs11_root_key.py) -------------
    #: The token vendor's PKCS#11 library (SoftHSM2's by default, for development).
    pkcs11_module: Path = Path("/usr/lib/softhsm/libsofthsm2.so")
    #: The token holding the root key, by label; or by slot id (pkcs11_slot); both must
    #: then match.
    pkcs11_token_label: str | None = None
    pkcs11_slot: int | None = Field(default=None, ge=0)
    #: The token's user PIN; or pkcs11_pin_file, a file holding it (one line). Never logged.
    pkcs11_pin: SecretStr | None = None
    pkcs11_pin_file: Path | None = None
    #: The label of the root key in the token (``keyledger operator create-hsm-key``).
    pkcs11_key_label: str = Field(default="keyledger-root", min_length=1)
    #: During a rotation from one token key to another (``keyledger operator
    #: rotate-root-key``): the labels of the keys in the same token that rows may still be
    #: wrapped under (comma-separated), as previous_root_keys for keys held as bytes.
    pkcs11_previous_key_labels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # --- CloudHSM key stores (app/infrastructure/hsm_clusters.py) -------------------------
    #: The "clusters" CreateCustomKeyStore may name (JSON): cluster id -> {"token_label"
    #: (required), "module" (default pkcs11_module), "trust_anchor" (optional: the
    #: TrustAnchorCertificate a store must present)}. A store's KeyStorePassword is the
    #: token's user PIN.
    cloudhsm_clusters: dict[str, dict[str, str]] = Field(default_factory=dict)
    #: During a root-key rotation (``keyledger operator rotate-root-key``): the keys rows may
    #: still be wrapped under (base64, comma-separated). Unwrapping tries them after the
    #: current key; wrapping always uses the current one. Empty once the rotation is done.
    previous_root_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    #: During a rotation away from the Shamir-sealed root key (to a file or token key): the
    #: seal's keys are previous keys; the service starts sealed and opens the rows still
    #: under them once the old set's shares were given. False once the rotation is done.
    shamir_previous: bool = False
    bootstrap_access_key_id: str | None = None
    bootstrap_secret_access_key: SecretStr | None = None
    default_account_id: str = "111122223333"
    default_region: str = "us-east-1"
    partition: str = "aws"
    #: The regions this deployment serves.
    regions: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_REGIONS))
    scheduler_interval_seconds: float = Field(default=30.0, gt=0)
    #: The auditor's console (/console, docs/console.md): a session ends this long after
    #: its last page view, and this long after its sign-in whatever its use.
    console_idle_seconds: float = Field(default=900.0, gt=0)
    console_session_seconds: float = Field(default=8 * 3600.0, gt=0)
    log_level: str = "info"
    #: ``text`` (for people) or ``json`` (one object a line, for a log pipeline).
    log_format: str = "text"
    #: Worker processes of ``keyledger run``. Unset: one per core this process may use
    #: (one in emulator mode, whose reset must reach every cache).
    workers: int = Field(default_factory=lambda: available_cores(), ge=1)
    #: Keys each process keeps in memory (aggregate, wrapping key, materials), least
    #: recently used first out. Bounds memory whatever the number of keys; a key out of
    #: the cache is read back in bulk with others (~0.3 ms a batch) on its next use.
    key_cache_size: int = Field(default=10_000, ge=100)
    #: Run the audit-trail projection inside this process. ``keyledger run --workers N``
    #: turns it off in its workers and runs it in a process of its own instead, so that
    #: its work does not wait on the workers' GIL (the trail stays within 1 s of the
    #: ledger under full load).
    run_audit_projection: bool = True
    # --- the verifiable ledger (docs/verifiable-ledger.md) --------------------------------
    #: Keep the Merkle log over the ledger, sign checkpoints and watch them. Off only to
    #: measure what the log costs (make bench); without it nothing is verifiable.
    ledger_log: bool = True
    #: The log's origin: the first line of every checkpoint and the name of its signing
    #: key. Name the deployment uniquely (e.g. ``kms.example.com/prod``); the default
    #: names the account and Region.
    ledger_origin: str | None = None
    #: How often the leading process signs the tree head when it grew (checkpoint lag is
    #: about the Merkle log's lag plus this).
    ledger_checkpoint_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    #: How often each process re-verifies the recent range and samples older events.
    ledger_watch_interval_seconds: float = Field(default=10.0, gt=0)
    #: Further verifier keys (``<name>+<key ID>+<base64 key>``) whose checkpoints this
    #: service trusts beside its own: a previous signing key, or witnesses.
    ledger_trusted_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # --- external key stores (docs/key-custody.md#external-key-stores-xks) ---------------
    #: The XKS Proxy API KeyLedger serves: one or two ``AccessKeyId:SecretAccessKey`` pairs
    #: (comma-separated; two while rotating), the SigV4 credentials AWS KMS (or another
    #: KeyLedger) signs its calls with. Empty: the XKS Proxy API is not served. Never logged.
    xks_credentials: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    #: The KeyLedger principal whose permissions the XKS credentials use (its account's
    #: keys; kms:DescribeKey, kms:Encrypt, kms:Decrypt on them).
    xks_principal_arn: str | None = None
    #: Where the XKS Proxy API is served: ``[/<prefix>]/kms/xks/v1``, or several such paths
    #: (comma-separated), a prefix segment ``*`` standing for any one segment.
    xks_uri_path: str = "/kms/xks/v1"
    #: KeyLedger as an XKS client: the longest a proxy may take to answer (AWS: 250 ms),
    #: and the connections kept to each proxy.
    xks_proxy_timeout_seconds: float = Field(default=0.25, gt=0, le=30)
    xks_proxy_max_connections: int = Field(default=10, ge=1, le=1000)
    #: Where this process reaches an external key store's proxy: its XksProxyUriEndpoint
    #: (``https://host``, AWS's form) -> the base URL to connect to instead (JSON), another
    #: ``https://`` URL (a port, an internal name), or ``http://`` to a loopback address
    #: only (tests, a proxy on the same host). Endpoints not listed are used as they are.
    xks_proxy_endpoints: dict[str, str] = Field(default_factory=dict)
    #: Lets tests move the service clock. Never enable in production.
    test_clock: bool = False
    #: Emulator mode for test suites written for moto or LocalStack (docs/emulator.md): any
    #: access key id is accepted unverified, /_keyledger/reset and /_keyledger/clock are
    #: served. Never enable in production.
    emulator: bool = False
    # --- request quotas (docs/operations.md#request-quotas) -------------------------------
    #: AWS KMS's request quotas per account and Region, answered ThrottlingException when
    #: exceeded: ``aws`` (AWS's default rates) or ``off``. Unset: ``aws``, except in emulator
    #: mode, where it is ``off``.
    quotas: Literal["aws", "off"] | None = None
    #: Rates in requests per second that replace AWS's defaults, by quota name (a JSON
    #: object: ``{"symmetric": 20000, "CreateKey": 50}``; names in docs/operations.md).
    quota_rates: dict[str, float] = Field(default_factory=dict)
    #: The service nodes (replicas behind one load balancer) an account's quotas are shared
    #: by: each process enforces rate / (workers x nodes).
    quota_nodes: int = Field(default=1, ge=1)

    # --- the database's absence: fail fast, recover by itself (docs/reliability.md) -------
    #: How long a request may wait on the database: a writer batch's deadline (retries and
    #: settling a lost commit included) and any wait for a pooled connection. Past it the
    #: request is answered 503 DependencyTimeoutException.
    database_deadline_seconds: float = Field(default=1.0, gt=0, le=60)
    #: How long a KMS call may wait for any one answer of the database outside the writer
    #: (a credential or principal read, a list query, a pooled connection); past it the
    #: call is answered 503 DependencyTimeoutException. A bound on each wait, not on the
    #: call: a call that waits for a busy view (ListKeys right after a write) takes as
    #: long as the view needs while the database answers. Not the writer's deadline,
    #: which bounds a whole batch (its retries and the settling of a lost commit).
    request_database_wait_seconds: float = Field(default=1.0, gt=0, le=60)
    #: /readyz answers 503 when the database has not answered within this.
    readiness_timeout_seconds: float = Field(default=0.5, gt=0, le=60)
    #: The longest a round trip to PostgreSQL may go unanswered when no deadline is set
    #: (background work); then its connection is closed as lost. A frozen server accepts
    #: and acknowledges everything and answers nothing: only this notices.
    database_io_timeout_seconds: float = Field(default=10.0, gt=0)
    #: While the database is away, how often the writer tries to reconnect.
    database_retry_interval_seconds: float = Field(default=0.1, gt=0, le=10)

    @field_validator(
        "database_url",
        "bootstrap_access_key_id",
        "pkcs11_token_label",
        "pkcs11_slot",
        "xks_principal_arn",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("root_key", "bootstrap_secret_access_key", "pkcs11_pin", mode="before")
    @classmethod
    def _blank_secret_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, SecretStr) and not value.get_secret_value().strip():
            return None
        return value

    @field_validator("root_key_file", "pkcs11_pin_file", mode="before")
    @classmethod
    def _blank_path_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("root_key")
    @classmethod
    def _check_root_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _decode_root_key(value.get_secret_value())
        return value

    @field_validator("previous_root_keys", "pkcs11_previous_key_labels", mode="before")
    @classmethod
    def _parse_previous_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("previous_root_keys")
    @classmethod
    def _check_previous_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        for key in value:
            _decode_root_key(key.get_secret_value())
        return value

    def previous_root_key_bytes(self) -> list[bytes]:
        return [_decode_root_key(key.get_secret_value()) for key in self.previous_root_keys]

    @field_validator("cloudhsm_clusters")
    @classmethod
    def _check_clusters(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for cluster_id, entry in value.items():
            if not re.fullmatch(r"cluster-[2-7a-zA-Z]{11,16}", cluster_id):
                raise ValueError(f"cloudhsm_clusters: {cluster_id!r} is not a cluster id")
            if not entry.get("token_label"):
                raise ValueError(f"cloudhsm_clusters: {cluster_id} needs a token_label")
            unknown = set(entry) - {"token_label", "module", "trust_anchor"}
            if unknown:
                raise ValueError(f"cloudhsm_clusters: {cluster_id}: unknown {sorted(unknown)}")
        return value

    @field_validator("xks_credentials", mode="before")
    @classmethod
    def _parse_xks_credentials(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("xks_credentials")
    @classmethod
    def _check_xks_credentials(cls, value: list[SecretStr]) -> list[SecretStr]:
        if len(value) > 2:
            raise ValueError("xks_credentials holds one or two AccessKeyId:Secret pairs")
        for pair in value:
            key_id, _, secret = pair.get_secret_value().partition(":")
            if not _XKS_KEY_ID_RE.fullmatch(key_id) or not secret:
                raise ValueError("xks_credentials: each pair is AccessKeyId:SecretAccessKey")
        return value

    @field_validator("xks_uri_path")
    @classmethod
    def _check_xks_uri_path(cls, value: str) -> str:
        try:
            xks.served_paths(_comma_separated(value))
        except ValueError as error:
            raise ValueError(f"xks_uri_path: {error}") from None
        return value

    @property
    def xks_uri_paths(self) -> tuple[str, ...]:
        """The URI paths the XKS Proxy API is served at."""
        return tuple(_comma_separated(self.xks_uri_path))

    @field_validator("xks_proxy_endpoints")
    @classmethod
    def _check_xks_proxy_endpoints(cls, value: dict[str, str]) -> dict[str, str]:
        for endpoint, base in value.items():
            if not _XKS_ENDPOINT_RE.fullmatch(endpoint):
                raise ValueError(f"xks_proxy_endpoints: {endpoint!r} is not https://<host>")
            if not _reachable_base(base):
                raise ValueError(
                    f"xks_proxy_endpoints: {endpoint} -> must be https://..., or http:// to"
                    " a loopback address"
                )
        return value

    def xks_secrets(self) -> dict[str, str]:
        """The XKS credentials: access key id -> secret access key."""
        pairs = (pair.get_secret_value().partition(":") for pair in self.xks_credentials)
        return {key_id: secret for key_id, _, secret in pairs}

    @field_validator("quotas", mode="before")
    @classmethod
    def _blank_quotas_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @field_validator("quota_rates")
    @classmethod
    def _check_quota_rates(cls, value: dict[str, float]) -> dict[str, float]:
        for name, rate in value.items():
            if name not in QUOTA_NAMES:
                raise ValueError(
                    f"quota_rates: {name[:64]!r} is not a quota; the quotas are "
                    f"{', '.join(sorted(QUOTA_NAMES))}"
                )
            if not (0 < rate < float("inf")):
                raise ValueError(f"quota_rates: {name} needs a rate above 0 (requests a second)")
        return value

    @property
    def quota_share(self) -> int:
        """The processes an account's quotas are divided among: the workers, times the
        nodes. ``keyledger run --workers N`` names N to each worker; a process whose workers
        were never named (one ``keyledger run`` process, tests, an embedded runtime) serves
        alone, whatever the default would start."""
        workers = self.workers if "workers" in self.model_fields_set else 1
        return workers * self.quota_nodes

    @property
    def quotas_enabled(self) -> bool:
        """Whether request quotas are enforced: ``aws``, or unset outside emulator mode."""
        return self.quotas == "aws" or (self.quotas is None and not self.emulator)

    @field_validator("ledger_trusted_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("ledger_origin")
    @classmethod
    def _check_origin(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c.isspace() for c in value) or "+" in value):
            raise ValueError("ledger_origin is one word: no space, no '+'")
        return value

    @property
    def checkpoint_origin(self) -> str:
        """The origin of this deployment's checkpoints (and its signing key's name)."""
        return self.ledger_origin or (
            f"keyledger/{self.partition}/{self.default_account_id}/{self.default_region}"
        )

    @field_validator("regions", mode="before")
    @classmethod
    def _parse_regions(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("regions")
    @classmethod
    def _check_regions(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one region is required")
        for region in value:
            if not _REGION_RE.match(region):
                raise ValueError(f"invalid region name: {region!r}")
        return list(dict.fromkeys(value))

    @field_validator("default_account_id")
    @classmethod
    def _check_account(cls, value: str) -> str:
        if not _ACCOUNT_RE.match(value):
            raise ValueError(
                f"KEYLEDGER_DEFAULT_ACCOUNT_ID must be 12 digits (an AWS account id such as "
                f"111122223333), not '{value}'"
            )
        return value

    @field_validator("bootstrap_access_key_id")
    @classmethod
    def _check_bootstrap_access_key_id(cls, value: str | None) -> str | None:
        """Say which setting is wrong and how to fix it, at start-up rather than at the
        administrator's first request (access key ids: AWS's 16-128 letters and digits)."""
        if value is not None and not (16 <= len(value) <= 128 and value.isalnum()):
            raise ValueError(
                f"KEYLEDGER_BOOTSTRAP_ACCESS_KEY_ID must be 16-128 letters and digits, as AWS "
                f"access key ids are (e.g. AKLGEXAMPLE00000001); '{value}' has {len(value)} "
                "characters. Choose a longer id, or unset it and let KeyLedger generate the "
                "administrator's key pair (saved to <data dir>/credentials). For tests written "
                "for moto or LocalStack, emulator mode (KEYLEDGER_EMULATOR=1 or keyledger run "
                "--emulator, docs/emulator.md) accepts any access key id without this setting"
            )
        return value

    @field_validator("partition")
    @classmethod
    def _check_partition(cls, value: str) -> str:
        if not value or not re.fullmatch(r"[a-z0-9-]+", value):
            raise ValueError(f"invalid partition: {value!r}")
        return value

    @field_validator("log_format")
    @classmethod
    def _check_log_format(cls, value: str) -> str:
        log_format = value.strip().lower()
        if log_format not in ("text", "json"):
            raise ValueError("log_format must be text or json")
        return log_format

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {sorted(LOG_LEVELS)}")
        return level

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.default_region not in self.regions:
            raise ValueError(
                f"default_region {self.default_region!r} is not in regions {self.regions!r}"
            )
        if self.root_key is not None and self.root_key_file is not None:
            raise ValueError("set only one of root_key and root_key_file")
        if self.pkcs11_pin is not None and self.pkcs11_pin_file is not None:
            raise ValueError("set only one of pkcs11_pin and pkcs11_pin_file")
        if self.root_key_provider == "pkcs11" and (
            self.root_key is not None or self.root_key_file is not None
        ):
            # The point of an HSM is that the root key is never in this process.
            raise ValueError("root_key_provider pkcs11 takes no root_key or root_key_file")
        if self.root_key_provider == "shamir" and (
            self.root_key is not None or self.root_key_file is not None
        ):
            raise ValueError(
                "root_key_provider shamir keeps the root key sealed in the database:"
                " set no root_key or root_key_file"
            )
        if self.root_key_provider == "shamir" and self.shamir_previous:
            raise ValueError(
                "shamir_previous is for a rotation from the Shamir-sealed key to a file or"
                " PKCS#11 key; between Shamir sets the seal keeps its previous key itself"
            )
        if self.xks_credentials and (
            self.xks_principal_arn is None or not _PRINCIPAL_RE.fullmatch(self.xks_principal_arn)
        ):
            raise ValueError("xks_credentials need xks_principal_arn, an IAM principal's ARN")
        if (self.bootstrap_access_key_id is None) != (self.bootstrap_secret_access_key is None):
            raise ValueError(
                "bootstrap_access_key_id and bootstrap_secret_access_key must be set together"
            )
        if self.emulator and "workers" not in self.model_fields_set:
            self.workers = 1
        if self.emulator and self.workers > 1:
            # A reset empties one process's caches; other workers would keep stale ones.
            raise ValueError("KEYLEDGER_EMULATOR runs one process: set KEYLEDGER_WORKERS=1")
        return self

    @property
    def sealed_root_key(self) -> bool:
        """Whether a Shamir-sealed key is among the root keys (current or previous): the
        service then starts sealed."""
        return self.root_key_provider == "shamir" or self.shamir_previous

    def root_key_bytes(self) -> bytes | None:
        """The 32-byte root key from ``root_key`` or ``root_key_file``; None if neither is set."""
        if self.root_key is not None:
            return _decode_root_key(self.root_key.get_secret_value())
        if self.root_key_file is not None:
            data = self.root_key_file.read_bytes()
            if len(data) == ROOT_KEY_BYTES:
                return data
            return _decode_root_key(data.decode("ascii", errors="replace"))
        return None

    def pkcs11_pin_value(self) -> str | None:
        """The token's user PIN from ``pkcs11_pin`` or ``pkcs11_pin_file``; None if neither."""
        if self.pkcs11_pin is not None:
            return self.pkcs11_pin.get_secret_value()
        if self.pkcs11_pin_file is not None:
            return self.pkcs11_pin_file.read_text().strip()
        return None


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with keyword ``overrides`` taking precedence."""
    return Settings(**overrides)
