"""Who is calling: accounts, principals and access keys, and SigV4 authentication."""

from __future__ import annotations

import base64
import contextlib
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError

from app.auth.sigv4 import IncomingRequest, verify_request
from app.clock import Clock
from app.vault import Vault
from app.writer import LedgerWriter, UnitOfWork
from domain.errors import AlreadyExistsError, NotFoundError, ValidationError
from domain.identifiers import (
    access_key_aggregate_id,
    account_aggregate_id,
    principal_aggregate_id,
)
from domain.identity import (
    AccessKey,
    Account,
    Principal,
    check_account_id,
    principal_arn,
    root_arn,
)

CREDENTIAL_CACHE_SECONDS = 30.0
MISS_CACHE_SECONDS = 1.0
ACCESS_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@dataclass(frozen=True)
class Caller:
    """An authenticated caller and the request context auditors need."""

    account_id: str
    principal_arn: str
    access_key_id: str
    region: str
    source_ip: str = ""
    user_agent: str = ""
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def actor(self) -> dict[str, Any]:
        return {
            "principal_arn": self.principal_arn,
            "account_id": self.account_id,
            "access_key_id": self.access_key_id,
            "region": self.region,
            "source_ip": self.source_ip,
            "user_agent": self.user_agent,
            "request_id": self.request_id,
        }


SERVICE_ACTOR: dict[str, Any] = {"principal_arn": "kms.amazonaws.com", "service": "kms"}


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    secret_access_key: str
    principal_arn: str
    account_id: str
    active: bool


class IdentityDirectory:
    """Creates identities through the writer; answers credential look-ups from a short cache."""

    def __init__(self, writer: LedgerWriter, vault: Vault, clock: Clock, partition: str) -> None:
        self._writer = writer
        self._vault = vault
        self._clock = clock
        self.partition = partition
        self._credentials: dict[str, tuple[float, Credential | None]] = {}
        self._lock = threading.Lock()

    # --- authentication ------------------------------------------------------------
    def credential(self, access_key_id: str) -> Credential | None:
        """The access key's credential, cached briefly so deactivation takes effect soon."""
        cached = self._credentials.get(access_key_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        credential = self._load_credential(access_key_id)
        with self._lock:
            if len(self._credentials) > 100_000:
                self._credentials.clear()
            # A miss is remembered only briefly: a key issued elsewhere works at once.
            ttl = CREDENTIAL_CACHE_SECONDS if credential is not None else MISS_CACHE_SECONDS
            self._credentials[access_key_id] = (time.monotonic() + ttl, credential)
        return credential

    def _load_credential(self, access_key_id: str) -> Credential | None:
        try:
            access_key: AccessKey = self._writer.ledger.repository.get(
                access_key_aggregate_id(access_key_id)
            )
        except AggregateNotFoundError:
            return None
        return Credential(
            access_key_id=access_key_id,
            secret_access_key=self._vault.unwrap_secret(access_key_id, access_key.wrapped_secret),
            principal_arn=access_key.principal_arn,
            account_id=access_key.account_id,
            active=access_key.active,
        )

    def secret_for(self, access_key_id: str) -> str | None:
        credential = self.credential(access_key_id)
        if credential is None or not credential.active:
            return None
        return credential.secret_access_key

    def authenticate(
        self,
        request: IncomingRequest,
        *,
        source_ip: str,
        user_agent: str,
        request_id: str | None = None,
        service: str = "kms",
    ) -> Caller:
        # Request freshness is about the client's real clock: a test clock moved forward to
        # make key windows pass must not make every real SDK's signature look expired.
        verified = verify_request(request, self.secret_for, now=datetime.now(UTC), service=service)
        credential = self.credential(verified.access_key_id)
        assert credential is not None  # verify_request found its secret
        return Caller(
            account_id=credential.account_id,
            principal_arn=credential.principal_arn,
            access_key_id=credential.access_key_id,
            region=verified.region,
            source_ip=source_ip,
            user_agent=user_agent,
            request_id=request_id or str(uuid.uuid4()),
        )

    # --- administration ---------------------------------------------------------------
    def create_account(self, account_id: str, name: str = "") -> str:
        check_account_id(account_id)

        def command(uow: UnitOfWork) -> str:
            aggregate_id = account_aggregate_id(account_id)
            if uow.get(aggregate_id) is not None:
                raise AlreadyExistsError(f"Account {account_id} already exists")
            uow.add(
                Account.create(
                    aggregate_id=aggregate_id, now=self._clock.now(), account_id=account_id,
                    name=name or account_id,
                )
            )  # fmt: skip
            return root_arn(self.partition, account_id)

        return self._writer.run_sync(command)

    def create_principal(self, account_id: str, name: str, principal_type: str = "user") -> str:
        arn = principal_arn(self.partition, account_id, principal_type, name)

        def command(uow: UnitOfWork) -> str:
            if uow.get(account_aggregate_id(account_id)) is None:
                raise NotFoundError(f"Account {account_id} does not exist")
            aggregate_id = principal_aggregate_id(arn)
            if uow.get(aggregate_id) is not None:
                raise AlreadyExistsError(f"Principal {arn} already exists")
            uow.add(
                Principal.create(
                    aggregate_id=aggregate_id, now=self._clock.now(), arn=arn,
                    account_id=account_id, principal_type=principal_type, name=name,
                )
            )  # fmt: skip
            return arn

        return self._writer.run_sync(command)

    def create_access_key(
        self,
        principal: str,
        *,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> tuple[str, str]:
        """Issue an access key pair for a principal ARN; the secret is shown only here."""
        access_key_id = access_key_id or new_access_key_id()
        secret_access_key = secret_access_key or new_secret_access_key()
        if not 16 <= len(access_key_id) <= 128 or not access_key_id.isalnum():
            raise ValidationError("Access key ids are 16-128 letters and digits.")
        wrapped = self._vault.wrap_secret(access_key_id, secret_access_key)

        def command(uow: UnitOfWork) -> None:
            owner: Principal | None = uow.get(principal_aggregate_id(principal))
            if owner is None:
                raise NotFoundError(f"Principal {principal} does not exist")
            aggregate_id = access_key_aggregate_id(access_key_id)
            if uow.get(aggregate_id) is not None:
                raise AlreadyExistsError(f"Access key {access_key_id} already exists")
            uow.add(
                AccessKey.create(
                    aggregate_id=aggregate_id, now=self._clock.now(),
                    access_key_id=access_key_id, principal_arn=principal,
                    account_id=owner.account_id, wrapped_secret=wrapped,
                )
            )  # fmt: skip

        self._writer.run_sync(command)
        return access_key_id, secret_access_key

    def deactivate_access_key(self, access_key_id: str) -> None:
        def command(uow: UnitOfWork) -> None:
            access_key: AccessKey | None = uow.get(access_key_aggregate_id(access_key_id))
            if access_key is None:
                raise NotFoundError(f"Access key {access_key_id} does not exist")
            access_key.deactivate(now=self._clock.now())

        self._writer.run_sync(command)
        self._credentials.pop(access_key_id, None)

    def ensure_account(self, account_id: str) -> None:
        with contextlib.suppress(AlreadyExistsError):
            self.create_account(account_id)

    def ensure_administrator(
        self, account_id: str, access_key_id: str | None, secret: str | None
    ) -> tuple[str, tuple[str, str] | None]:
        """The account's ``admin`` user; with a key pair given, make sure it holds that pair."""
        self.ensure_account(account_id)
        try:
            arn = self.create_principal(account_id, "admin")
        except AlreadyExistsError:
            arn = principal_arn(self.partition, account_id, "user", "admin")
        if access_key_id and secret:
            existing = self.credential(access_key_id)
            if existing is None:
                self.create_access_key(arn, access_key_id=access_key_id, secret_access_key=secret)
                self._credentials.pop(access_key_id, None)
            return arn, (access_key_id, secret)
        return arn, None

    def now(self) -> datetime:
        return self._clock.now()


def new_access_key_id() -> str:
    return "AKLG" + "".join(secrets.choice(ACCESS_KEY_ALPHABET) for _ in range(16))


def new_secret_access_key() -> str:
    return base64.b64encode(secrets.token_bytes(30)).decode()
