"""Who is calling: accounts, principals and access keys, and SigV4 authentication."""

from __future__ import annotations

import base64
import contextlib
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from eventsourcing.application import AggregateNotFoundError

from app.access_denials import DenialLog, DenialRecord
from app.auth.sigv4 import IncomingRequest, verify_request
from app.clock import Clock
from app.vault import Vault
from app.writer import LedgerWriter, UnitOfWork
from domain.errors import AccessDeniedError, AlreadyExistsError, NotFoundError, ValidationError
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
from domain.policy import administrator_policy

CREDENTIAL_CACHE_SECONDS = 30.0
MISS_CACHE_SECONDS = 1.0
ACCESS_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# A trusted service principal names the principal it acts for in this (signed) header.
ON_BEHALF_OF_HEADER = "x-keyledger-on-behalf-of"
PRINCIPAL_CACHE_SECONDS = 5.0
ADMINISTRATOR_POLICY_NAME = "AdministratorAccess"
# Who changed an identity when no signed caller did (the keyledger CLI, the bootstrap).
OPERATOR_ACTOR: dict[str, Any] = {"principal_arn": "keyledger-operator"}


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
    # Set when a trusted service principal signed for ``principal_arn``: the kms:ViaService
    # value ("ec2.us-east-1.amazonaws.com") and the service principal that signed.
    via_service: str = ""
    service_principal_arn: str = ""
    service_name: str = ""  # the signer's own service name when it calls for itself
    grant_tokens: tuple[str, ...] = ()  # the request's GrantTokens member

    def actor(self) -> dict[str, Any]:
        actor = {
            "principal_arn": self.principal_arn,
            "account_id": self.account_id,
            "access_key_id": self.access_key_id,
            "region": self.region,
            "source_ip": self.source_ip,
            "user_agent": self.user_agent,
            "request_id": self.request_id,
        }
        if self.via_service:
            actor["via_service"] = self.via_service
            actor["service_principal_arn"] = self.service_principal_arn
        return actor


SERVICE_ACTOR: dict[str, Any] = {"principal_arn": "kms.amazonaws.com", "service": "kms"}


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    secret_access_key: str
    principal_arn: str
    account_id: str
    active: bool


@dataclass(frozen=True)
class PrincipalInfo:
    """A principal as administrators see it."""

    arn: str
    account_id: str
    principal_type: str
    name: str
    policies: dict[str, str]
    service_name: str | None


class IdentityDirectory:
    """Creates identities through the writer; answers credential look-ups from a short cache."""

    def __init__(self, writer: LedgerWriter, vault: Vault, clock: Clock, partition: str) -> None:
        self._writer = writer
        self._vault = vault
        self._clock = clock
        self.partition = partition
        self._credentials: dict[str, tuple[float, Credential | None]] = {}
        self._principals: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()
        # Where denials found while authenticating go (wired by the runtime).
        self.denials: DenialLog | None = None

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
        caller = Caller(
            account_id=credential.account_id,
            principal_arn=credential.principal_arn,
            access_key_id=credential.access_key_id,
            region=verified.region,
            source_ip=source_ip,
            user_agent=user_agent,
            request_id=request_id or str(uuid.uuid4()),
        )
        signer = self._cached_principal(caller.principal_arn)
        service_name = signer.service_name if signer is not None else None
        on_behalf_of = [v for k, v in request.headers if k.lower() == ON_BEHALF_OF_HEADER]
        if not on_behalf_of:
            return replace(caller, service_name=service_name or "")
        return self._acting_for(caller, service_name, on_behalf_of, request)

    def _acting_for(
        self,
        signer: Caller,
        service_name: str | None,
        on_behalf_of: list[str],
        request: IncomingRequest,
    ) -> Caller:
        """The caller a trusted service principal acts for (``X-KeyLedger-On-Behalf-Of``).

        Only a principal designated as a service may act for another, the header must be
        covered by the signature, and the principal named must exist. kms:ViaService is
        then ``<service>.<region>.amazonaws.com``, as AWS sets it for integrated services.
        """
        target = on_behalf_of[0].strip()
        reason = None
        if service_name is None:
            reason = "it is not a trusted service principal"
        elif len(on_behalf_of) != 1 or ON_BEHALF_OF_HEADER not in _signed_headers(request):
            reason = f"the {ON_BEHALF_OF_HEADER} header must appear once and be signed"
        acting = self._cached_principal(target) if reason is None else None
        if reason is None and acting is None:
            reason = f"{target} does not exist"
        if reason is not None or acting is None:
            message = f"User: {signer.principal_arn} may not act on behalf of {target}: {reason}"
            self._record_denial(signer, "kms:ActOnBehalfOf", target, message)
            raise AccessDeniedError(message)
        assert service_name is not None
        prefix = service_name.removesuffix(".amazonaws.com")
        return replace(
            signer,
            principal_arn=acting.arn,
            account_id=acting.account_id,
            via_service=f"{prefix}.{signer.region}.amazonaws.com",
            service_principal_arn=signer.principal_arn,
        )

    def _record_denial(self, caller: Caller, action: str, resource: str, message: str) -> None:
        if self.denials is not None:
            self.denials.record(
                DenialRecord(
                    denied_at=self._clock.now(), request_id=caller.request_id,
                    principal_arn=caller.principal_arn, account_id=caller.account_id,
                    action=action, resource_arn=resource, error_code="AccessDeniedException",
                    message=message, source_ip=caller.source_ip,
                    access_key_id=caller.access_key_id,
                )
            )  # fmt: skip

    def _cached_principal(self, arn: str) -> Principal | None:
        cached = self._principals.get(arn)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            principal: Principal | None = self._writer.ledger.repository.get(
                principal_aggregate_id(arn)
            )
        except AggregateNotFoundError:
            principal = None
        with self._lock:
            if len(self._principals) > 100_000:
                self._principals.clear()
            self._principals[arn] = (time.monotonic() + PRINCIPAL_CACHE_SECONDS, principal)
        return principal

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

    def create_principal(
        self,
        account_id: str,
        name: str,
        principal_type: str = "user",
        *,
        policies: dict[str, str] | None = None,
        service_name: str | None = None,
        actor: dict[str, Any] | None = None,
    ) -> str:
        """Create a user or role. Like an IAM principal, it may do nothing until an identity
        policy (``policies``, or put_principal_policy later) allows it."""
        arn = principal_arn(self.partition, account_id, principal_type, name)

        def command(uow: UnitOfWork) -> str:
            if uow.get(account_aggregate_id(account_id)) is None:
                raise NotFoundError(f"Account {account_id} does not exist")
            aggregate_id = principal_aggregate_id(arn)
            if uow.get(aggregate_id) is not None:
                raise AlreadyExistsError(f"Principal {arn} already exists")
            now, who = self._clock.now(), actor or OPERATOR_ACTOR
            principal = Principal.create(
                aggregate_id=aggregate_id, now=now, arn=arn, account_id=account_id,
                principal_type=principal_type, name=name,
            )  # fmt: skip
            for policy_name, policy in (policies or {}).items():
                principal.put_policy(now=now, actor=who, policy_name=policy_name, policy=policy)
            if service_name is not None:
                principal.designate_service(now=now, actor=who, service_name=service_name)
            uow.add(principal)
            return arn

        created = self._writer.run_sync(command)
        self._principals.pop(arn, None)
        return created

    def _change_principal(self, arn: str, change: Any) -> None:
        def command(uow: UnitOfWork) -> None:
            principal: Principal | None = uow.get(principal_aggregate_id(arn), fresh=True)
            if principal is None:
                raise NotFoundError(f"Principal {arn} does not exist")
            change(principal, self._clock.now())

        self._writer.run_sync(command)
        self._principals.pop(arn, None)

    def put_principal_policy(
        self, arn: str, policy_name: str, policy: str, *, actor: dict[str, Any] | None = None
    ) -> None:
        """Create or replace an inline identity policy of a user or role."""
        self._change_principal(
            arn,
            lambda p, now: p.put_policy(
                now=now, actor=actor or OPERATOR_ACTOR, policy_name=policy_name, policy=policy
            ),
        )

    def delete_principal_policy(
        self, arn: str, policy_name: str, *, actor: dict[str, Any] | None = None
    ) -> None:
        who = actor or OPERATOR_ACTOR
        self._change_principal(
            arn, lambda p, now: p.delete_policy(now=now, actor=who, policy_name=policy_name)
        )

    def designate_service(
        self, arn: str, service_name: str | None, *, actor: dict[str, Any] | None = None
    ) -> None:
        """Trust ``arn`` as the service ``service_name`` (None: trust no longer)."""
        self._change_principal(
            arn,
            lambda p, now: p.designate_service(
                now=now, actor=actor or OPERATOR_ACTOR, service_name=service_name
            ),
        )

    def principal(self, arn: str) -> PrincipalInfo:
        def command(uow: UnitOfWork) -> PrincipalInfo:
            found: Principal | None = uow.get(principal_aggregate_id(arn), fresh=True)
            if found is None:
                raise NotFoundError(f"Principal {arn} does not exist")
            return PrincipalInfo(
                found.arn, found.account_id, found.principal_type, found.name,
                dict(found.policies), found.service_name,
            )  # fmt: skip

        return self._writer.run_sync(command)

    def access_key_owner(self, access_key_id: str) -> str:
        credential = self.credential(access_key_id)
        if credential is None:
            raise NotFoundError(f"Access key {access_key_id} does not exist")
        return credential.principal_arn

    def create_access_key(
        self,
        principal: str,
        *,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        actor: dict[str, Any] | None = None,
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
                    actor=actor or OPERATOR_ACTOR,
                )
            )  # fmt: skip

        self._writer.run_sync(command)
        return access_key_id, secret_access_key

    def deactivate_access_key(
        self, access_key_id: str, *, actor: dict[str, Any] | None = None
    ) -> None:
        def command(uow: UnitOfWork) -> None:
            access_key: AccessKey | None = uow.get(access_key_aggregate_id(access_key_id))
            if access_key is None:
                raise NotFoundError(f"Access key {access_key_id} does not exist")
            access_key.deactivate(now=self._clock.now(), actor=actor or OPERATOR_ACTOR)

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
        # Keys delegate to identity policies (the default key policy): the administrator
        # holds AdministratorAccess unless an operator gave it policies of their own.
        if not self.principal(arn).policies:
            self.put_principal_policy(arn, ADMINISTRATOR_POLICY_NAME, administrator_policy())
        if access_key_id and secret:
            existing = self.credential(access_key_id)
            if existing is None:
                self.create_access_key(arn, access_key_id=access_key_id, secret_access_key=secret)
                self._credentials.pop(access_key_id, None)
            return arn, (access_key_id, secret)
        return arn, None

    def now(self) -> datetime:
        return self._clock.now()


def _signed_headers(request: IncomingRequest) -> set[str]:
    """The header names the request's (verified) signature covers."""
    for name, value in request.headers:
        if name.lower() == "authorization":
            match = re.search(r"SignedHeaders=([^,\s]+)", value)
            return set(match.group(1).lower().split(";")) if match else set()
    for pair in request.query_string.split("&"):
        key, _, value = pair.partition("=")
        if key == "X-Amz-SignedHeaders":
            return set(unquote(value).lower().split(";"))
    return set()


def new_access_key_id() -> str:
    return "AKLG" + "".join(secrets.choice(ACCESS_KEY_ALPHABET) for _ in range(16))


def new_secret_access_key() -> str:
    return base64.b64encode(secrets.token_bytes(30)).decode()
