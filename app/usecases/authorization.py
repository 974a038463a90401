"""Authorization, in one place, for every entry point.

The service calls ``AccessControl.authorize`` once per key it touches (inside the writer
command that uses the key, so the decision and the use see the same key state) and
``authorize_account_action`` for actions without a key. This module builds the request
context AWS would build (caller, key, encryption context, algorithm, alias, tags, source IP,
time, kms:ViaService) and hands it, with the key policy, the caller's identity policies and
the key's grants, to the one pure evaluator (``domain.policy_evaluation``). A denial is
recorded in the denial log and answered with AWS's AccessDeniedException message; nothing
else changes.
"""

from __future__ import annotations

import hmac
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn

from app.ports import Clock, CommandRunner, DenialLog, DenialRecord, NeedsLoad, UnitOfWork, Vault
from app.support.lru import BoundedLru
from domain.errors import AccessDeniedError, InvalidGrantTokenError, MalformedPolicyDocumentError
from domain.grants import (
    TOKEN_NONCE_BYTES,
    Grant,
    GrantToken,
    decode_grant_token,
    encode_grant_token,
    grant_token_payload,
)
from domain.identifiers import principal_aggregate_id
from domain.identity import Principal
from domain.key_specs import SYMMETRIC_DEFAULT
from domain.multi_region import PRIMARY, REPLICA
from domain.policy import IDENTITY_POLICY, KEY_POLICY, PolicyDocument, parse_policy
from domain.policy_evaluation import (
    DENIED_CROSS_ACCOUNT,
    AuthorizationRequest,
    Decision,
    NewGrant,
    denial_message,
    evaluate,
)

if TYPE_CHECKING:
    from app.auth.credentials import Caller
    from domain.keys import Key

ACCESS_DENIED = "AccessDeniedException"
# Identity policy changes made by another process are seen within this many seconds
# (one small read per principal per interval); changes made here are seen at once.
PRINCIPAL_REFRESH_SECONDS = 1.0
PRINCIPAL_CACHE_SIZE = 100_000
DECISION_CACHE_SIZE = 10_000  # allow decisions kept (caller, action, key and their policies)
DECISION_CACHE_MAX_GRANTS = 32  # a key with more grants is decided afresh each time
LOCKOUT_MESSAGE = "The new key policy will not allow you to update the key policy in the future."
ConditionValue = str | Sequence[str]


@dataclass(frozen=True)
class AccessRequest:
    """What a use case knows about its request beyond the caller and the key."""

    encryption_context: Mapping[str, str] | None = None
    algorithm: str | None = None
    new_grant: NewGrant | None = None  # CreateGrant
    target_grant: Grant | None = None  # RetireGrant
    request_tags: Mapping[str, str] | None = None  # TagResource, CreateKey
    tag_keys: Sequence[str] | None = None  # UntagResource
    # Further condition keys, named as AWS writes them ("kms:RotationPeriodInDays": "90").
    conditions: Mapping[str, ConditionValue] = field(default_factory=dict)


# The request of a symmetric operation without an encryption context: the same for every
# such call (Encrypt, Decrypt, GenerateDataKey), so made once (it is immutable).
_SYMMETRIC_WITHOUT_CONTEXT = AccessRequest(None, SYMMETRIC_DEFAULT, conditions=MappingProxyType({}))


def symmetric_request(encryption_context: Mapping[str, str] | None) -> AccessRequest:
    """``AccessRequest(encryption_context, SYMMETRIC_DEFAULT)``: what a symmetric
    operation's authorization reads; one shared instance when there is no context."""
    if encryption_context is None:
        return _SYMMETRIC_WITHOUT_CONTEXT
    return AccessRequest(encryption_context, SYMMETRIC_DEFAULT)


class _LazyContext(Mapping[str, tuple[str, ...]]):
    """The condition context, built only when a statement has a condition to test."""

    def __init__(self, build: Callable[[], dict[str, tuple[str, ...]]]) -> None:
        self._build = build
        self._values: dict[str, tuple[str, ...]] | None = None

    def _resolved(self) -> dict[str, tuple[str, ...]]:
        if self._values is None:
            self._values = self._build()
        return self._values

    def __getitem__(self, key: str) -> tuple[str, ...]:
        return self._resolved()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._resolved())

    def __len__(self) -> int:
        return len(self._resolved())


def iso_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def condition_context(
    caller: Caller,
    action: str,
    key: Key | None,
    request: AccessRequest | None,
    now: datetime,
    *,
    alias_name: str | None = None,
) -> dict[str, tuple[str, ...]]:
    """The request context AWS evaluates conditions against; keys are lower-cased."""
    context: dict[str, tuple[str, ...]] = {}

    def put(name: str, *values: str) -> None:
        context[name.lower()] = tuple(values)

    arn = caller.principal_arn
    # For a role session, aws:PrincipalArn is the role's ARN (AWS's global condition keys).
    put("aws:PrincipalArn", caller.policy_principal_arn)
    put("aws:PrincipalAccount", caller.account_id)
    resource_type = arn.split(":", 5)[-1].split("/", 1)[0] if arn.startswith("arn:") else ""
    principal_types = {"user": "User", "role": "AssumedRole", "assumed-role": "AssumedRole"}
    put("aws:PrincipalType", principal_types.get(resource_type, "Account"))
    if resource_type == "user":
        put("aws:username", arn.rsplit("/", 1)[-1])
    put("aws:CurrentTime", iso_time(now))
    put("aws:EpochTime", str(int(now.timestamp())))
    put("aws:RequestedRegion", caller.region)
    put("kms:CallerAccount", caller.account_id)
    if caller.via_service:
        service = caller.via_service.split(".", 1)[0] + ".amazonaws.com"
        put("kms:ViaService", caller.via_service)
        put("aws:ViaAWSService", "true")
        put("aws:CalledVia", service)
        put("aws:CalledViaFirst", service)
        put("aws:CalledViaLast", service)
    else:
        put("aws:ViaAWSService", "false")
        if caller.source_ip:  # AWS omits aws:SourceIp when a service calls for you
            put("aws:SourceIp", caller.source_ip)
    if key is not None:
        put("kms:KeySpec", key.key_spec)
        put("kms:CustomerMasterKeySpec", key.key_spec)
        put("kms:KeyUsage", key.key_usage)
        put("kms:CustomerMasterKeyUsage", key.key_usage)
        put("kms:KeyOrigin", key.origin)
        put("kms:MultiRegion", "true" if key.multi_region is not None else "false")
        if key.multi_region is not None:  # AWS: only multi-Region keys have the property
            put("kms:MultiRegionKeyType", REPLICA if key.is_replica else PRIMARY)
        if key.aliases:
            put("kms:ResourceAliases", *key.aliases)
        for tag_key, tag_value in key.tags.items():
            put(f"aws:ResourceTag/{tag_key}", tag_value)
    if alias_name:
        put("kms:RequestAlias", alias_name)
    if request is not None:
        if request.encryption_context:
            for context_key, value in request.encryption_context.items():
                name = f"kms:encryptioncontext:{context_key.lower()}"
                context[name] = (*context.get(name, ()), value)
            put("kms:EncryptionContextKeys", *request.encryption_context)
        if request.algorithm:
            put("kms:EncryptionAlgorithm", request.algorithm)
        if request.request_tags is not None:
            for tag_key, tag_value in request.request_tags.items():
                put(f"aws:RequestTag/{tag_key}", tag_value)
            if request.request_tags:
                put("aws:TagKeys", *request.request_tags)
        if request.tag_keys:
            put("aws:TagKeys", *request.tag_keys)
        for condition_key, condition_value in request.conditions.items():
            values = (condition_value,) if isinstance(condition_value, str) else condition_value
            put(condition_key, *values)
    return context


class AccessControl:
    """Decides, records denials, issues and checks grant tokens."""

    def __init__(
        self,
        *,
        runner: CommandRunner,
        vault: Vault,
        clock: Clock,
        denials: DenialLog,
        partition: str,
    ) -> None:
        self.runner = runner
        self.vault = vault
        self.clock = clock
        self.partition = partition
        self.denials = denials
        # Principals read from the store within the last interval.
        self._refreshed: BoundedLru[uuid.UUID, bool] = BoundedLru(
            PRINCIPAL_CACHE_SIZE, ttl=PRINCIPAL_REFRESH_SECONDS
        )
        # Allow decisions that depend on nothing but their key (_decision_key).
        self._allowed: BoundedLru[tuple[Any, ...], Decision] = BoundedLru(DECISION_CACHE_SIZE)

    # ==== identity policies ====================================================================
    def principal(self, uow: UnitOfWork, principal_arn: str) -> Principal | None:
        """The principal as of now: refreshed from the store at most once per interval, by
        the writer's own (asynchronous) read, never by a read on the event loop."""
        principal_id = _principal_id(principal_arn)
        due = principal_id not in self._refreshed
        found = uow.get(principal_id, fresh=due)  # NeedsLoad: the writer reads, then re-runs
        if due:
            self._refreshed.put(principal_id, True)
        return found if isinstance(found, Principal) else None

    def identity_policies(self, principal: Principal | None) -> tuple[PolicyDocument, ...]:
        if principal is None:
            return ()
        return tuple(
            parse_policy(
                text,
                kind=IDENTITY_POLICY,
                source=f"identity policy {name}",
                partition=self.partition,
            )
            for name, text in sorted(principal.policies.items())
        )

    # ==== deciding =============================================================================
    def request_for(
        self,
        caller: Caller,
        action: str,
        key: Key | None,
        request: AccessRequest | None = None,
        *,
        alias_name: str | None = None,
        now: datetime | None = None,
        resource_arn: str | None = None,
    ) -> AuthorizationRequest:
        moment = now or self.clock.now()
        qualified = action if ":" in action else f"kms:{action}"
        return AuthorizationRequest(
            principal_arn=caller.principal_arn,
            principal_account=caller.account_id,
            session_issuer_arn=caller.session.role_arn if caller.session is not None else None,
            action=qualified,
            resource_arn=key.arn if key is not None else (resource_arn or "*"),
            resource_account=key.account_id if key is not None else None,
            context=_LazyContext(
                lambda: condition_context(
                    caller, qualified, key, request, moment, alias_name=alias_name
                )
            ),
            encryption_context=request.encryption_context if request else None,
            service_principal=caller.service_name or None,
            new_grant=request.new_grant if request else None,
            target_grant=request.target_grant if request else None,
        )

    @staticmethod
    def grants_of(key: Key | None) -> tuple[Grant, ...]:
        if key is None or not key.grants:
            return ()
        return tuple(Grant.from_record(record) for record in key.grants.values())

    def decide(
        self,
        uow: UnitOfWork,
        caller: Caller,
        action: str,
        key: Key | None,
        request: AccessRequest | None = None,
        *,
        alias_name: str | None = None,
        resource_arn: str | None = None,
        explain: bool = False,
    ) -> tuple[AuthorizationRequest, Decision]:
        principal = self.principal(uow, caller.policy_principal_arn)
        authorization = self.request_for(
            caller, action, key, request, alias_name=alias_name, resource_arn=resource_arn
        )
        key_policy = self._key_policy(key)
        decision = evaluate(
            authorization,
            key_policy=key_policy,
            identity_policies=self.identity_policies(principal),
            grants=self.grants_of(key),
            explain=explain,
        )
        if not decision.allowed and decision.denial != DENIED_CROSS_ACCOUNT:
            _read_before_denying(uow, key, principal)
        return authorization, decision

    def _decision_key(
        self,
        uow: UnitOfWork,
        caller: Caller,
        action: str,
        key: Key | None,
        request: AccessRequest | None,
        resource_arn: str | None,
    ) -> tuple[Any, ...] | None:
        """What an allow decision depends on, when nothing else can change it; None when
        it must be decided afresh: no key, or a grant operation (its own grant is an
        input). Whether a decision with this key may be kept is ``_cacheable``'s to say;
        the key holds everything that answer reads, so a decision found under it was
        cacheable when it was kept and is still.

        The key holds the inputs themselves (the policies' texts, the grants' ids, the
        principal's identity policies), not versions of them: a changed policy or grant is
        another key, so no event has to invalidate anything, and a decision is never
        served stale. The principal is refreshed as decide() refreshes it."""
        if key is None or (request is not None and (request.new_grant or request.target_grant)):
            return None
        principal = self.principal(uow, caller.policy_principal_arn)
        return (
            caller.principal_arn,
            caller.account_id,
            caller.policy_principal_arn,
            caller.service_name,
            action,
            key.arn,
            key.account_id,
            resource_arn,
            key.policy,
            tuple(sorted(principal.policies.items())) if principal is not None else (),
            tuple(key.grants),
        )

    def _cacheable(self, uow: UnitOfWork, caller: Caller, key: Key) -> bool:
        """Whether an allow on ``key`` reads nothing but its decision key: not when a
        statement has a Condition (it may read the time, the source address, the
        encryption context...), a grant has constraints, or the key has many grants."""
        grants = key.grants
        if len(grants) > DECISION_CACHE_MAX_GRANTS or any(
            record.get("constraints") for record in grants.values()
        ):
            return False
        if not self._key_policy(key).unconditional:  # type: ignore[union-attr]
            return False
        principal = self.principal(uow, caller.policy_principal_arn)
        return all(policy.unconditional for policy in self.identity_policies(principal))

    def _key_policy(self, key: Key | None) -> PolicyDocument | None:
        if key is None:
            return None
        return parse_policy(key.policy, kind=KEY_POLICY, partition=self.partition)

    def authorize(
        self,
        uow: UnitOfWork,
        caller: Caller,
        action: str,
        key: Key | None,
        request: AccessRequest | None = None,
        *,
        alias_name: str | None = None,
        resource_arn: str | None = None,
    ) -> Decision:
        """Raise AccessDeniedError (recorded) unless ``caller`` may ``action`` on ``key``.

        ``action`` is a KMS operation name ("Decrypt") or a qualified action ("iam:CreateUser");
        without a key, ``resource_arn`` (default "*") is what identity policies must allow.
        """
        self.check_grant_tokens(caller)
        cache_key = self._decision_key(uow, caller, action, key, request, resource_arn)
        if cache_key is not None:
            cached = self._allowed.get(cache_key)
            if cached is not None:
                return cached
        authorization, decision = self.decide(
            uow, caller, action, key, request, alias_name=alias_name, resource_arn=resource_arn
        )
        if decision.allowed and cache_key is not None:
            assert key is not None  # a decision key names one
            if self._cacheable(uow, caller, key):
                self._allowed.put(cache_key, decision)
        if not decision.allowed:
            self.deny(
                caller,
                authorization.action,
                authorization.resource_arn,
                denial_message(authorization, decision),
            )
        return decision

    async def authorize_account_action(
        self,
        caller: Caller,
        action: str,
        request: AccessRequest | None = None,
        *,
        resource_arn: str | None = None,
    ) -> None:
        """Authorize an action without a key (ListKeys, GenerateRandom, ...) on the writer."""
        await self.runner.run(
            lambda uow: self.authorize(
                uow, caller, action, None, request, resource_arn=resource_arn
            )
        )

    def deny(self, caller: Caller, action: str, resource_arn: str, message: str) -> NoReturn:
        """Record a denial and raise AccessDeniedError with ``message``."""
        self.denials.record(
            DenialRecord(
                denied_at=self.clock.now(),
                request_id=caller.request_id,
                principal_arn=caller.principal_arn,
                account_id=caller.account_id,
                action=action,
                resource_arn=resource_arn,
                error_code=ACCESS_DENIED,
                message=message,
                source_ip=caller.source_ip,
                access_key_id=caller.access_key_id,
                via_service=caller.via_service,
            )
        )
        raise AccessDeniedError(message)

    # ==== policy checks on PutKeyPolicy and CreateKey ============================================
    def check_policy(
        self,
        uow: UnitOfWork,
        caller: Caller,
        policy: str,
        *,
        key: Key | None,
        key_arn: str,
        key_account: str,
        bypass_lockout: bool,
    ) -> None:
        """The principals a new key policy names must exist, and unless bypassed, the policy
        must let the caller change it again (AWS's policy lockout safety check)."""
        document = parse_policy(policy, kind=KEY_POLICY, partition=self.partition)
        for named in document.named_principals():
            kind = named.split(":", 5)[-1].split("/", 1)[0]
            if kind in ("user", "role") and self.principal(uow, named) is None:
                raise MalformedPolicyDocumentError(
                    "Policy contains a statement with one or more invalid principals."
                )
        if bypass_lockout:
            return
        principal = self.principal(uow, caller.policy_principal_arn)
        request = AccessRequest(conditions={"kms:BypassPolicyLockoutSafetyCheck": "false"})
        authorization = self.request_for(caller, "PutKeyPolicy", key, request)
        if key is None:
            authorization = replace(
                authorization, resource_arn=key_arn, resource_account=key_account
            )
        decision = evaluate(
            authorization,
            key_policy=document,
            identity_policies=self.identity_policies(principal),
            grants=(),
        )
        if not decision.allowed:
            raise MalformedPolicyDocumentError(LOCKOUT_MESSAGE)

    # ==== grant tokens =========================================================================
    def issue_grant_token(self, key_id: uuid.UUID, grant_id: str) -> str:
        """A new token for a grant: every call gives another; all of a grant's are equal."""
        payload = grant_token_payload(key_id, grant_id, os.urandom(TOKEN_NONCE_BYTES))
        return encode_grant_token(payload, self.vault.grant_token_mac(payload))

    def read_grant_token(self, token: str) -> GrantToken:
        parsed = decode_grant_token(token)
        if not hmac.compare_digest(parsed.mac, self.vault.grant_token_mac(parsed.signed)):
            raise InvalidGrantTokenError("The grant token is not valid.")
        return parsed

    def check_grant_tokens(self, caller: Caller) -> None:
        """Every token a request carries must be one this deployment issued.

        Grants are state of their key and take effect at once, so a valid token adds no
        permission by itself; it is checked so a forged one fails as on AWS.
        """
        for token in caller.grant_tokens:
            self.read_grant_token(token)


@lru_cache(maxsize=PRINCIPAL_CACHE_SIZE)
def _principal_id(principal_arn: str) -> uuid.UUID:
    """A principal's aggregate id (a name-based UUID: worked out once per principal)."""
    return principal_aggregate_id(principal_arn)


def _read_before_denying(uow: UnitOfWork, *aggregates: Any) -> None:
    """Before denying, make sure neither the key (its policy, its grants) nor the principal
    changed in another process since this process cached them: whichever this batch has
    not read from the store, the writer reads (asynchronously) before running the command
    again, which then decides on what it read."""
    for aggregate in aggregates:
        if aggregate is not None and not aggregate.pending_events and aggregate.id not in uow.read:
            raise NeedsLoad(aggregate.id)
