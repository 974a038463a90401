"""Multi-Region keys: ReplicateKey, UpdatePrimaryRegion, and keeping a set alike.

Every key of a set is an aggregate of its own (domain.multi_region). A command that
changes what the set shares (its Regions, its primary, its materials and rotation) records
an event on every key of the set, in one batch, so each key's own history tells the whole
story and every key answers DescribeKey alone. Materials are copied by unwrapping the
primary's and wrapping the same bytes under the replica's own wrapping key: deleting one
key of the set shreds its copy only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from app.auth.credentials import SERVICE_ACTOR, Caller
from app.ports import Clock, CommandRunner, UnitOfWork, Vault
from app.usecases.authorization import AccessControl, AccessRequest
from app.usecases.resolution import KeyResolver
from app.usecases.results import KeyDescription
from domain.actors import Actor
from domain.errors import NotFoundError, UnsupportedOperationError
from domain.identifiers import key_arn, multi_region_aggregate_id
from domain.keys import Key, KeyMaterial, check_tags
from domain.multi_region import REPLICA
from domain.policy import default_key_policy, validate_policy_document


@dataclass(frozen=True)
class ReplicateKeyRequest:
    key_id: str
    replica_region: str
    policy: str | None = None
    bypass_policy_lockout_safety_check: bool = False
    description: str = ""
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Replicated:
    """ReplicateKey's answer: the replica as AWS answers it (Creating), its policy, tags."""

    replica: KeyDescription
    policy: str
    tags: dict[str, str]


def members(uow: UnitOfWork, key: Key) -> list[Key]:
    """The other keys of ``key``'s set, as this batch sees them."""
    if key.multi_region is None:
        return []
    found = []
    for region in key.multi_region["regions"]:
        if region == key.region:
            continue
        member = uow.get(multi_region_aggregate_id(key.multi_region["key_id"], region))
        if isinstance(member, Key) and not member.is_deleted:
            found.append(member)
    return found


def copy_material(
    vault: Vault, primary: Key, material: KeyMaterial, replica_id: uuid.UUID
) -> KeyMaterial:
    """``material`` of ``primary`` wrapped for the key ``replica_id`` (same id, version)."""
    raw = vault.unwrap_material(primary.id, material)
    if raw is None:
        raise NotFoundError(f"Key '{primary.arn}' does not exist")
    copied = vault.new_material(
        replica_id,
        version=material.version,
        now=material.created,
        rotation_type=material.rotation_type,
        plaintext=raw,
        material_id=material.material_id,
    )
    return replace(copied, created=material.created)


def synchronize_replicas(
    uow: UnitOfWork, vault: Vault, primary: Key, now: datetime, *, rotated: bool
) -> None:
    """After ``primary`` rotated (``rotated``) or changed its rotation schedule: each
    replica records the same (SynchronizeMultiRegionKey)."""
    if not primary.is_multi_region_primary:
        return
    for replica in members(uow, primary):
        material = None
        if rotated:
            material = copy_material(vault, primary, primary.current_material, replica.id)
        replica.synchronize(now=now, actor=SERVICE_ACTOR, primary=primary, material=material)


def note_replica_gone(uow: UnitOfWork, replica: Key, now: datetime) -> None:
    """A deleted key of a set leaves it: the others record ReplicaRemoved."""
    for member in members(uow, replica):
        member.note_replica_removed(now=now, actor=SERVICE_ACTOR, region=replica.region)


class MultiRegionOperations:
    """ReplicateKey and UpdatePrimaryRegion."""

    def __init__(
        self,
        *,
        runner: CommandRunner,
        resolver: KeyResolver,
        access: AccessControl,
        vault: Vault,
        clock: Clock,
        partition: str,
        regions: frozenset[str],
    ) -> None:
        self.runner = runner
        self.resolver = resolver
        self.access = access
        self.vault = vault
        self.clock = clock
        self.partition = partition
        self.regions = regions

    async def replicate_key(self, caller: Caller, request: ReplicateKeyRequest) -> Replicated:
        self._check_region(request.replica_region)
        if request.policy is not None:
            validate_policy_document(request.policy)
        tags = dict(request.tags)
        check_tags(tags, existing={})

        def command(uow: UnitOfWork) -> Replicated:
            primary = self.resolver.resolve(
                uow,
                caller,
                request.key_id,
                "ReplicateKey",
                allow_alias=False,
                request=AccessRequest(conditions={"kms:ReplicaRegion": request.replica_region}),
            )
            primary.check_can_replicate(request.replica_region)
            assert primary.multi_region is not None
            replica_caller = Caller(**{**caller.__dict__, "region": request.replica_region})
            # AWS: the caller needs kms:CreateKey in the replica Region (and TagResource
            # with tags), as for CreateKey, whose condition keys describe the new replica.
            self.access.authorize(
                uow,
                replica_caller,
                "CreateKey",
                None,
                AccessRequest(
                    request_tags=tags or None,
                    conditions=_replica_conditions(primary, request),
                ),
            )
            replica_arn = key_arn(
                self.partition,
                request.replica_region,
                primary.account_id,
                primary.multi_region["key_id"],
            )
            policy = request.policy or default_key_policy(self.partition, primary.account_id)
            if request.policy is not None:
                self.access.check_policy(
                    uow,
                    replica_caller,
                    request.policy,
                    key=None,
                    key_arn=replica_arn,
                    key_account=primary.account_id,
                    bypass_lockout=request.bypass_policy_lockout_safety_check,
                )
            return self._replicate(
                uow, caller, replica_caller, primary, request, replica_arn, policy, tags
            )

        return await self.runner.run(command)

    def _replicate(
        self,
        uow: UnitOfWork,
        caller: Caller,
        replica_caller: Caller,
        primary: Key,
        request: ReplicateKeyRequest,
        replica_arn: str,
        policy: str,
        tags: dict[str, str],
    ) -> Replicated:
        assert primary.multi_region is not None
        replica_id = multi_region_aggregate_id(
            primary.multi_region["key_id"], request.replica_region
        )
        if uow.get(replica_id) is not None:  # a replica deleted there earlier
            raise UnsupportedOperationError(
                f"{replica_arn} was deleted; KeyLedger cannot replicate this key into "
                f"{request.replica_region} again."
            )
        now, actor = self.clock.now(), caller.actor()
        others = members(uow, primary)
        materials = [copy_material(self.vault, primary, m, replica_id) for m in primary.materials]
        replica = primary.replicate(
            replica_id=replica_id,
            now=now,
            actor=actor,
            replica_actor=replica_caller.actor(),
            replica_arn=replica_arn,
            replica_region=request.replica_region,
            description=request.description,
            policy=policy,
            tags=tags,
            materials=materials,
        )
        uow.add(replica)
        for member in others:
            member.note_replica_added(
                now=now, actor=actor, region=request.replica_region, arn=replica_arn
            )
        # AWS answers the replica as it is the moment it is created: Creating, disabled.
        answered = replace(KeyDescription.of(replica, "Creating"), current_material_id=None)
        return Replicated(answered, policy, tags)

    async def update_primary_region(self, caller: Caller, key_id: str, primary_region: str) -> None:
        self._check_region(primary_region)

        access = AccessRequest(conditions={"kms:PrimaryRegion": primary_region})

        def command(uow: UnitOfWork) -> None:
            primary = self.resolver.resolve(
                uow, caller, key_id, "UpdatePrimaryRegion", allow_alias=False, request=access
            )
            if primary.multi_region is None:
                raise UnsupportedOperationError(f"{primary.arn} is not a multi-region primary key.")
            new_arn = key_arn(
                self.partition, primary_region, primary.account_id, primary.multi_region["key_id"]
            )
            primary.check_can_update_primary(primary_region, new_arn)
            if primary_region == primary.region:
                return  # already the primary Region
            new_primary = uow.get(
                multi_region_aggregate_id(primary.multi_region["key_id"], primary_region)
            )
            if not isinstance(new_primary, Key) or new_primary.is_deleted:
                raise NotFoundError(f"Key '{new_arn}' does not exist")
            # AWS: kms:UpdatePrimaryRegion is needed on the replica too, in its Region.
            replica_caller = Caller(**{**caller.__dict__, "region": primary_region})
            self.access.authorize(uow, replica_caller, "UpdatePrimaryRegion", new_primary, access)
            new_primary.check_allowed("UpdatePrimaryRegion")
            self._record_new_primary(uow, primary, primary_region, caller.actor())

        await self.runner.run(command)

    def _record_new_primary(
        self, uow: UnitOfWork, primary: Key, primary_region: str, actor: Actor
    ) -> None:
        now = self.clock.now()
        for member in [primary, *members(uow, primary)]:
            member.update_primary_region(now=now, actor=actor, primary_region=primary_region)

    def _check_region(self, region: str) -> None:
        """A Region this deployment serves (AWS: a Region of the partition; the model's
        pattern was checked with the request)."""
        if region not in self.regions:
            raise UnsupportedOperationError(
                f"Region {region} is not a Region this KeyLedger deployment serves."
            )


def _replica_conditions(primary: Key, request: ReplicateKeyRequest) -> dict[str, str]:
    """The CreateKey condition keys of the replica ReplicateKey makes: its properties are
    the primary's shared ones (AWS KMS condition keys: kms:KeySpec, kms:MultiRegion,
    kms:MultiRegionKeyType... describe the key that CreateKey creates)."""
    return {
        "kms:KeySpec": primary.key_spec,
        "kms:KeyUsage": primary.key_usage,
        "kms:KeyOrigin": primary.origin,
        "kms:CustomerMasterKeySpec": primary.key_spec,
        "kms:CustomerMasterKeyUsage": primary.key_usage,
        "kms:MultiRegion": "true",
        "kms:MultiRegionKeyType": REPLICA,
        "kms:BypassPolicyLockoutSafetyCheck": str(
            request.bypass_policy_lockout_safety_check
        ).lower(),
    }
