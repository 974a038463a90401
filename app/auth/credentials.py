"""Who is calling: accounts, principals and access keys, and SigV4 authentication."""

from __future__ import annotations

import base64
import contextlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from app.auth.credential_reads import CachedReads, KnownAccessKeys, ReadSlots
from app.auth.limiter import FailedAuthenticationLimiter
from app.auth.sigv4 import IncomingRequest, VerifiedCaller, forget_signing_keys, verify_request
from app.ports import (
    ActiveAccessKeys,
    Clock,
    CommandRunner,
    DenialLog,
    DenialRecord,
    EventHistory,
    UnitOfWork,
    Vault,
)
from app.support.request_ids import new_request_id
from domain.actors import Actor
from domain.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    AuthenticationError,
    NotFoundError,
    UnrecognizedClientError,
    ValidationError,
)
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
from domain.sts import (
    RoleSession,
    check_not_expired,
    decode_session_token,
    session_secret,
)

CREDENTIAL_CACHE_SECONDS = 30.0
# An unknown access key id or principal is remembered as unknown this long: a flood of
# repeats costs no read, and a key issued by another process still works within seconds.
MISS_CACHE_SECONDS = 2.0
ACCESS_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# A trusted service principal names the principal it acts for in this (signed) header.
ON_BEHALF_OF_HEADER = "x-keyledger-on-behalf-of"
PRINCIPAL_CACHE_SECONDS = 5.0
ADMINISTRATOR_POLICY_NAME = "AdministratorAccess"
# Who changed an identity when no signed caller did (the keyledger CLI, the bootstrap).
OPERATOR_ACTOR = Actor(principal_arn="keyledger-operator")
# The console's sign-in (verify_secret): AWS's AccessKeyIdType, and a bound on the secret.
_SIGN_IN_ACCESS_KEY_ID = re.compile(r"[A-Za-z0-9]{16,128}")
MAX_SECRET_LENGTH = 256
# What a refused sign-in is told (and its record says), as CloudTrail's ConsoleLogin.
FAILED_SIGN_IN_MESSAGE = "Failed authentication"


@dataclass(frozen=True)
class Caller:
    """An authenticated caller and the request context auditors need."""

    account_id: str
    principal_arn: str
    access_key_id: str
    region: str
    source_ip: str = ""
    user_agent: str = ""
    request_id: str = field(default_factory=new_request_id)
    # Set when a trusted service principal signed for ``principal_arn``: the kms:ViaService
    # value ("ec2.us-east-1.amazonaws.com") and the service principal that signed.
    via_service: str = ""
    service_principal_arn: str = ""
    service_name: str = ""  # the signer's own service name when it calls for itself
    grant_tokens: tuple[str, ...] = ()  # the request's GrantTokens member
    # Set when the caller signed with temporary credentials of an assumed role (STS).
    session: RoleSession | None = None

    def __init__(
        self,
        account_id: str,
        principal_arn: str,
        access_key_id: str,
        region: str,
        source_ip: str = "",
        user_agent: str = "",
        request_id: str | None = None,
        via_service: str = "",
        service_principal_arn: str = "",
        service_name: str = "",
        grant_tokens: tuple[str, ...] = (),
        session: RoleSession | None = None,
    ) -> None:
        # The generated __init__ less its object.__setattr__ per field: one Caller is built
        # per request (tests/unit/test_hand_written_inits.py holds it to the fields).
        self.__dict__.update(
            account_id=account_id,
            principal_arn=principal_arn,
            access_key_id=access_key_id,
            region=region,
            source_ip=source_ip,
            user_agent=user_agent,
            request_id=new_request_id() if request_id is None else request_id,
            via_service=via_service,
            service_principal_arn=service_principal_arn,
            service_name=service_name,
            grant_tokens=grant_tokens,
            session=session,
        )

    @property
    def policy_principal_arn(self) -> str:
        """The IAM principal whose identity policies apply: a session's role, else the
        caller itself."""
        return self.session.role_arn if self.session is not None else self.principal_arn

    def actor(self) -> Actor:
        """Who this caller is, as events record it (the via-service fields only when set)."""
        via = bool(self.via_service)
        session = self.session
        return Actor(
            principal_arn=self.principal_arn,
            account_id=self.account_id,
            access_key_id=self.access_key_id,
            region=self.region,
            source_ip=self.source_ip,
            user_agent=self.user_agent,
            request_id=self.request_id,
            via_service=self.via_service if via else None,
            service_principal_arn=self.service_principal_arn if via else None,
            session_created=(
                session.issued_at.strftime("%Y-%m-%dT%H:%M:%SZ") if session is not None else None
            ),
        )


SERVICE_ACTOR = Actor(principal_arn="kms.amazonaws.com", service="kms")


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
    trust_policy: str | None = None
    max_session_duration: int | None = None


class _NeedsRead(Exception):
    """Raised from a SigV4 secret look-up: the credential must be read before verifying."""

    def __init__(self, access_key_id: str) -> None:
        super().__init__(access_key_id)
        self.access_key_id = access_key_id


class IdentityDirectory:
    """Creates identities through the writer; authenticates requests from cached
    credentials, reading unknown ones off the event loop (see CachedReads)."""

    def __init__(
        self,
        runner: CommandRunner,
        history: EventHistory,
        vault: Vault,
        clock: Clock,
        partition: str,
        *,
        denials: DenialLog,
        active_access_keys: ActiveAccessKeys | None = None,
        limiter: FailedAuthenticationLimiter | None = None,
        slots: ReadSlots | None = None,
    ) -> None:
        self._runner = runner
        self._history = history
        self._vault = vault
        self._clock = clock
        self.partition = partition
        self.denials = denials  # where denials found while authenticating go
        self.limiter = limiter or FailedAuthenticationLimiter()
        self._known_keys = KnownAccessKeys(active_access_keys)
        self.read_slots = slots or ReadSlots()  # its pending count is worth watching
        self._credentials = CachedReads(
            self._read_credential,
            self.read_slots,
            ttl=CREDENTIAL_CACHE_SECONDS,
            miss_ttl=MISS_CACHE_SECONDS,
            cache="credentials",
        )
        self._principals = CachedReads(
            self._read_principal,
            self.read_slots,
            ttl=PRINCIPAL_CACHE_SECONDS,
            miss_ttl=MISS_CACHE_SECONDS,
            cache="principals",
        )

    # --- credentials ------------------------------------------------------------------
    def credential(self, access_key_id: str) -> Credential | None:
        """The access key's credential, cached briefly so deactivation takes effect soon.
        Reads the ledger when not cached: for threads only (never on the event loop)."""
        return self._credentials.get_sync(access_key_id)

    async def credential_async(self, access_key_id: str) -> Credential | None:
        """The access key's credential, read off the event loop when not cached."""
        return await self._credentials.get(access_key_id)

    def forget_credentials(self) -> None:
        """Drop every cached secret (a seal: they were unwrapped under the root key), and
        the SigV4 signing keys derived from them."""
        self._credentials.forget_all()
        forget_signing_keys()

    def session_claim(
        self, access_key_id: str, headers: Sequence[tuple[str, str]], query_string: str
    ) -> RoleSession | None:
        """The assumed-role session a refused request was signed for: its token is one this
        service issued (its MAC verifies) for ``access_key_id``, expired or not. Whom the
        refusal's record names; never a reason to accept the request."""
        token = _session_token(IncomingRequest("", "", query_string, headers, b""))
        if token is None:
            return None
        try:
            session = decode_session_token(token, self._vault.session_token_mac)
        except (AuthenticationError, ValueError, TypeError):
            return None
        return session if session.access_key_id == access_key_id else None

    def cached_credential(self, access_key_id: str) -> Credential | None:
        """The credential if this process holds it; never reads."""
        return self._credentials.cached(access_key_id)

    def _read_credential(self, access_key_id: str) -> Credential | None:
        access_key: AccessKey | None = self._history.find(access_key_aggregate_id(access_key_id))
        if access_key is None:
            return None
        return Credential(
            access_key_id=access_key_id,
            secret_access_key=self._vault.unwrap_secret(access_key_id, access_key.wrapped_secret),
            principal_arn=access_key.principal_arn,
            account_id=access_key.account_id,
            active=access_key.active,
        )

    def _read_principal(self, arn: str) -> Principal | None:
        principal: Principal | None = self._history.find(principal_aggregate_id(arn))
        return principal

    # --- authentication ------------------------------------------------------------
    async def authenticate(
        self,
        request: IncomingRequest,
        *,
        source_ip: str,
        user_agent: str,
        request_id: str | None = None,
        service: str = "kms",
    ) -> Caller:
        """The caller who signed ``request``, or an AuthenticationError. A source that has
        spent its failed-authentication budget gets ThrottlingError instead of any error,
        and before any credential it names is read (unless that key was found valid
        recently: see _check_budget)."""
        token = _session_token(request)
        try:
            if token is not None:
                verified, session = self._verify_session(request, token, service)
                return await self._session_caller(
                    verified, session, request, source_ip, user_agent, request_id
                )
            verified, credential = await self._verify(request, source_ip, service)
        except AuthenticationError as error:
            self._known_keys.refresh_if_stale()  # ready before any source spends its budget
            if not self.limiter.charge(source_ip):
                raise self.limiter.refuse(source_ip) from error
            raise
        signer = self._principals.lookup(credential.principal_arn)  # no coroutine if cached
        if signer is None and not self._principals.known_missing(credential.principal_arn):
            signer = await self._principals.get(credential.principal_arn)
        service_name = signer.service_name if signer is not None else None
        on_behalf_of = request.header_index().get(ON_BEHALF_OF_HEADER) or []
        caller = Caller(
            account_id=credential.account_id,
            principal_arn=credential.principal_arn,
            access_key_id=credential.access_key_id,
            region=verified.region,
            source_ip=source_ip,
            user_agent=user_agent,
            request_id=request_id or new_request_id(),
            # Its service's name only once it acts for itself (_acting_for sets it then).
            service_name=(service_name or "") if not on_behalf_of else "",
        )
        if not on_behalf_of:
            return caller
        return await self._acting_for(caller, service_name, on_behalf_of, request)

    async def verify_secret(
        self, access_key_id: str, secret_access_key: str, *, source_ip: str
    ) -> Credential:
        """The active credential whose secret is ``secret_access_key`` (the console's sign-in:
        no request to sign, the pair itself is presented), or UnrecognizedClientError. Held
        to the same failed-authentication budget as signed requests: a source that spent it
        gets ThrottlingError before anything is read (unless the key is one it holds)."""
        well_formed = (
            _SIGN_IN_ACCESS_KEY_ID.fullmatch(access_key_id) is not None
            and 0 < len(secret_access_key) <= MAX_SECRET_LENGTH
        )
        credential = None
        if well_formed:
            self._check_budget(access_key_id, source_ip)
            credential = await self._credentials.get(access_key_id)
        if (
            credential is None
            or not credential.active
            or not hmac.compare_digest(
                credential.secret_access_key.encode(), secret_access_key.encode("utf-8", "replace")
            )
        ):
            self._known_keys.refresh_if_stale()
            if not self.limiter.charge(source_ip):
                raise self.limiter.refuse(source_ip)
            raise UnrecognizedClientError(FAILED_SIGN_IN_MESSAGE)
        return credential

    def _verify_session(
        self, request: IncomingRequest, token: str, service: str
    ) -> tuple[VerifiedCaller, RoleSession]:
        """Verify a request signed with temporary credentials: the token must be one this
        service issued (its MAC, no read), unexpired on the service clock, and for the
        access key id that signed; the secret is derived, never looked up."""
        mac = self._vault.session_token_mac
        session = decode_session_token(token, mac)
        check_not_expired(session, self._clock.now())

        def secret_for(access_key_id: str) -> str | None:
            if access_key_id != session.access_key_id:
                return None
            return session_secret(access_key_id, mac)

        verified = verify_request(request, secret_for, now=datetime.now(UTC), service=service)
        return verified, session

    async def _session_caller(
        self,
        verified: VerifiedCaller,
        session: RoleSession,
        request: IncomingRequest,
        source_ip: str,
        user_agent: str,
        request_id: str | None,
    ) -> Caller:
        caller = Caller(
            account_id=session.account_id,
            principal_arn=session.arn,
            access_key_id=session.access_key_id,
            region=verified.region,
            source_ip=source_ip,
            user_agent=user_agent,
            request_id=request_id or new_request_id(),
            session=session,
        )
        on_behalf_of = request.header_index().get(ON_BEHALF_OF_HEADER) or []
        if on_behalf_of:  # a session is never a trusted service principal
            return await self._acting_for(caller, None, on_behalf_of, request)
        return caller

    async def _verify(
        self, request: IncomingRequest, source_ip: str, service: str
    ) -> tuple[VerifiedCaller, Credential]:
        """Verify against cached credentials; read the one named (once) when not cached."""
        read: dict[str, Credential | None] = {}
        used: list[Credential] = []

        def secret_for(access_key_id: str) -> str | None:
            if access_key_id in read:
                credential = read[access_key_id]
            else:
                credential = self._credentials.lookup(access_key_id)
                if credential is None and not self._credentials.known_missing(access_key_id):
                    self._check_budget(access_key_id, source_ip)  # before any read
                    raise _NeedsRead(access_key_id)
            if credential is None or not credential.active:
                return None
            used.append(credential)
            return credential.secret_access_key

        # Request freshness is about the client's real clock: a test clock moved forward to
        # make key windows pass must not make every real SDK's signature look expired.
        try:
            verified = verify_request(request, secret_for, now=datetime.now(UTC), service=service)
        except _NeedsRead as need:
            read[need.access_key_id] = await self._credentials.get(need.access_key_id)
            verified = verify_request(request, secret_for, now=datetime.now(UTC), service=service)
        return verified, used[-1]

    def _check_budget(self, access_key_id: str, source_ip: str) -> None:
        """A source over its failed-authentication budget gets no credential read, unless
        the key it names is one this process found valid recently or one that was issued
        (its owner's client keeps working)."""
        if (
            self.limiter.exhausted(source_ip)
            and not self._credentials.vouched_for(access_key_id)
            and access_key_id not in self._known_keys
        ):
            raise self.limiter.refuse(source_ip)

    async def _acting_for(
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
        acting = await self._principals.get(target) if reason is None else None
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
        self.denials.record(
            DenialRecord(
                denied_at=self._clock.now(),
                request_id=caller.request_id,
                principal_arn=caller.principal_arn,
                account_id=caller.account_id,
                action=action,
                resource_arn=resource,
                error_code="AccessDeniedException",
                message=message,
                source_ip=caller.source_ip,
                access_key_id=caller.access_key_id,
            )
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
                    aggregate_id=aggregate_id,
                    now=self._clock.now(),
                    account_id=account_id,
                    name=name or account_id,
                )
            )
            return root_arn(self.partition, account_id)

        return self._runner.run_sync(command)

    def create_principal(
        self,
        account_id: str,
        name: str,
        principal_type: str = "user",
        *,
        policies: dict[str, str] | None = None,
        service_name: str | None = None,
        actor: Actor | None = None,
        trust_policy: str | None = None,
        max_session_duration: int | None = None,
    ) -> str:
        """Create a user or role. Like an IAM principal, it may do nothing until an identity
        policy (``policies``, or put_principal_policy later) allows it; a role may be
        assumed (STS AssumeRole) by whom its ``trust_policy`` allows."""
        arn = principal_arn(self.partition, account_id, principal_type, name)

        def command(uow: UnitOfWork) -> str:
            if uow.get(account_aggregate_id(account_id)) is None:
                raise NotFoundError(f"Account {account_id} does not exist")
            aggregate_id = principal_aggregate_id(arn)
            if uow.get(aggregate_id) is not None:
                raise AlreadyExistsError(f"Principal {arn} already exists")
            now, who = self._clock.now(), actor or OPERATOR_ACTOR
            principal = Principal.create(
                aggregate_id=aggregate_id,
                now=now,
                arn=arn,
                account_id=account_id,
                principal_type=principal_type,
                name=name,
            )
            for policy_name, policy in (policies or {}).items():
                principal.put_policy(now=now, actor=who, policy_name=policy_name, policy=policy)
            if service_name is not None:
                principal.designate_service(now=now, actor=who, service_name=service_name)
            if trust_policy is not None:
                principal.set_trust_policy(
                    now=now,
                    actor=who,
                    policy=trust_policy,
                    max_session_duration=max_session_duration,
                )
            uow.add(principal)
            return arn

        created = self._runner.run_sync(command)
        self._principals.forget(arn)
        return created

    def _change_principal(self, arn: str, change: Any) -> None:
        def command(uow: UnitOfWork) -> None:
            principal: Principal | None = uow.get(principal_aggregate_id(arn), fresh=True)
            if principal is None:
                raise NotFoundError(f"Principal {arn} does not exist")
            change(principal, self._clock.now())

        self._runner.run_sync(command)
        self._principals.forget(arn)

    def put_principal_policy(
        self, arn: str, policy_name: str, policy: str, *, actor: Actor | None = None
    ) -> None:
        """Create or replace an inline identity policy of a user or role."""
        self._change_principal(
            arn,
            lambda p, now: p.put_policy(
                now=now, actor=actor or OPERATOR_ACTOR, policy_name=policy_name, policy=policy
            ),
        )

    def delete_principal_policy(
        self, arn: str, policy_name: str, *, actor: Actor | None = None
    ) -> None:
        who = actor or OPERATOR_ACTOR
        self._change_principal(
            arn, lambda p, now: p.delete_policy(now=now, actor=who, policy_name=policy_name)
        )

    def set_trust_policy(
        self,
        arn: str,
        policy: str,
        *,
        max_session_duration: int | None = None,
        actor: Actor | None = None,
    ) -> None:
        """Set who may assume the role ``arn`` (IAM's UpdateAssumeRolePolicy)."""
        self._change_principal(
            arn,
            lambda p, now: p.set_trust_policy(
                now=now,
                actor=actor or OPERATOR_ACTOR,
                policy=policy,
                max_session_duration=max_session_duration,
            ),
        )

    def designate_service(
        self, arn: str, service_name: str | None, *, actor: Actor | None = None
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
                found.arn,
                found.account_id,
                found.principal_type,
                found.name,
                dict(found.policies),
                found.service_name,
                found.trust_policy,
                found.max_session_duration if found.principal_type == "role" else None,
            )

        return self._runner.run_sync(command)

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
        actor: Actor | None = None,
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
                    aggregate_id=aggregate_id,
                    now=self._clock.now(),
                    access_key_id=access_key_id,
                    principal_arn=principal,
                    account_id=owner.account_id,
                    wrapped_secret=wrapped,
                    actor=actor or OPERATOR_ACTOR,
                )
            )

        self._runner.run_sync(command)
        self._credentials.forget(access_key_id)  # were it remembered as unknown
        return access_key_id, secret_access_key

    def deactivate_access_key(self, access_key_id: str, *, actor: Actor | None = None) -> None:
        def command(uow: UnitOfWork) -> None:
            access_key: AccessKey | None = uow.get(access_key_aggregate_id(access_key_id))
            if access_key is None:
                raise NotFoundError(f"Access key {access_key_id} does not exist")
            access_key.deactivate(now=self._clock.now(), actor=actor or OPERATOR_ACTOR)

        self._runner.run_sync(command)
        self._credentials.forget(access_key_id)

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
            return arn, (access_key_id, secret)
        return arn, None

    def now(self) -> datetime:
        return self._clock.now()


def _session_token(request: IncomingRequest) -> str | None:
    """The X-Amz-Security-Token the request carries (header or presigned query), if any;
    sigv4 checks that the signature covers it."""
    values = request.header_index().get("x-amz-security-token")
    if values:
        return values[0]
    if "X-Amz-Security-Token=" in request.query_string:
        for pair in request.query_string.split("&"):
            key, _, value = pair.partition("=")
            if key == "X-Amz-Security-Token":
                return unquote(value)
    return None


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
