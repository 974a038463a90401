"""Imported key material: GetParametersForImport, ImportKeyMaterial,
DeleteImportedKeyMaterial, and the scheduler's expiry of material whose ValidTo passed.

The RSA wrapping key of an import is generated in a worker thread before the command, never
on the writer thread; the material is unwrapped with it, checked against the key spec and the
key's earlier material, and wrapped under a wrapping key of its own (so that deleting or
expiring it shreds only it).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from app.auth.credentials import SERVICE_ACTOR, Caller
from app.ports import Clock, CommandRunner, UnitOfWork, Vault
from app.usecases.authorization import AccessRequest
from app.usecases.resolution import KeyResolver
from app.usecases.results import RotationEntry
from domain import algorithms
from domain.errors import (
    IncorrectKeyMaterialError,
    InvalidImportTokenError,
    UnsupportedOperationError,
    ValidationError,
)
from domain.keys import (
    KEY_MATERIAL_DOES_NOT_EXPIRE,
    KEY_MATERIAL_EXPIRES,
    Key,
    encode_import_token,
)

_IMPORT_WRAPPING_KEY_LABEL = b"import-wrapping-key:"


@dataclass(frozen=True)
class ImportParametersResult:
    key_arn: str
    import_token: bytes
    public_key: bytes  # the RSA wrapping key, DER SubjectPublicKeyInfo
    valid_to: datetime


@dataclass(frozen=True)
class MaterialChange:
    """ImportKeyMaterial and DeleteImportedKeyMaterial: the material they concerned."""

    key_arn: str
    material_id: str | None


def imported_rotation_entries(key: Key, include_all: bool) -> list[RotationEntry]:
    """ListKeyRotations of an imported symmetric key: each material with its import state."""
    current = key.current_material.material_id if key.materials else None
    chosen = key.materials if include_all else key.materials[1:]
    listed = [(m, "CURRENT" if m.material_id == current else "NON_CURRENT") for m in chosen]
    if include_all and key.pending_material is not None:
        listed.append((key.pending_material, "PENDING_ROTATION"))
    entries = []
    for material, material_state in listed:
        state = key.imported_materials.get(material.material_id)
        pending = material_state == "PENDING_ROTATION"
        entries.append(
            RotationEntry(
                key.key_id,
                material.material_id,
                material.created,
                None if pending else material.rotation_type,
                import_state="IMPORTED" if state and state["imported"] else "PENDING_IMPORT",
                material_state=material_state,
                expiration_model=state["expiration_model"] if state else None,
                valid_to=state["valid_to"] if state else None,
                description=state["description"] if state else None,
            )
        )
    return entries


class ImportedMaterial:
    def __init__(
        self, *, runner: CommandRunner, resolver: KeyResolver, vault: Vault, clock: Clock
    ) -> None:
        self.runner = runner
        self.resolver = resolver
        self.vault = vault
        self.clock = clock

    # ==== imported key material ================================================================
    async def get_parameters_for_import(
        self, caller: Caller, key_id: str, wrapping_algorithm: str, wrapping_key_spec: str
    ) -> ImportParametersResult:
        """A fresh RSA wrapping key and a single-use token, valid for 24 hours."""
        if wrapping_algorithm == "RSAES_PKCS1_V1_5":
            raise ValidationError(
                "The RSAES_PKCS1_V1_5 wrapping algorithm is no longer supported; use "
                "RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256."
            )
        if (
            wrapping_algorithm not in algorithms.WRAPPING_ALGORITHMS
            or wrapping_key_spec not in algorithms.WRAPPING_KEY_SPECS
        ):
            raise UnsupportedOperationError(
                f"WrappingAlgorithm {wrapping_algorithm} with WrappingKeySpec "
                f"{wrapping_key_spec} is not supported by this KeyLedger version."
            )

        access = AccessRequest(
            conditions={
                "kms:WrappingAlgorithm": wrapping_algorithm,
                "kms:WrappingKeySpec": wrapping_key_spec,
            }
        )

        def check(uow: UnitOfWork) -> None:
            key = self.resolver.resolve(
                uow, caller, key_id, "GetParametersForImport", allow_alias=False, request=access
            )
            key.check_can_import("GetParametersForImport")

        await self.runner.run(check)  # before seconds of RSA generation
        private_key = await asyncio.to_thread(algorithms.new_wrapping_key, wrapping_key_spec)
        public_key = algorithms.public_der(
            algorithms.load_private_key(wrapping_key_spec, private_key)
        )
        token_id = secrets.token_hex(16)

        def command(uow: UnitOfWork) -> ImportParametersResult:
            key = self.resolver.resolve(
                uow, caller, key_id, "GetParametersForImport", allow_alias=False, request=access
            )
            key.check_can_import("GetParametersForImport")
            wrapped = self.vault.seal_for_key(
                key.id, _IMPORT_WRAPPING_KEY_LABEL + token_id.encode(), private_key
            )
            valid_to = key.issue_import_parameters(
                now=self.clock.now(),
                actor=caller.actor(),
                token_id=token_id,
                wrapping_algorithm=wrapping_algorithm,
                wrapping_key_spec=wrapping_key_spec,
                wrapped_private_key=wrapped,
            )
            token = encode_import_token(key.id, token_id, valid_to)
            return ImportParametersResult(key.arn, token, public_key, valid_to)

        return await self.runner.run(command)

    async def import_key_material(
        self,
        caller: Caller,
        key_id: str,
        import_token: bytes,
        encrypted_key_material: bytes,
        *,
        valid_to: datetime | None,
        expiration_model: str | None,
        import_type: str | None = None,
        description: str | None = None,
        key_material_id: str | None = None,
    ) -> MaterialChange:
        """Unwrap material with the token's wrapping key, check it against the key spec and
        the key's earlier material, wrap it under a wrapping key of its own, record it."""
        model = expiration_model or KEY_MATERIAL_EXPIRES
        if model == KEY_MATERIAL_EXPIRES and valid_to is None:
            raise ValidationError(
                "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES"
            )
        if model == KEY_MATERIAL_DOES_NOT_EXPIRE and valid_to is not None:
            raise ValidationError(
                "A validTo date must not be set if the ExpirationModel is "
                "KEY_MATERIAL_DOES_NOT_EXPIRE"
            )

        # The effective model counts when the request leaves it out (AWS's default applies).
        conditions = {"kms:ExpirationModel": model}
        if valid_to is not None:  # kms:ValidTo is Unix time, as AWS writes it ("1546257599.0")
            conditions["kms:ValidTo"] = str(valid_to.timestamp())
        access = AccessRequest(conditions=conditions)

        def open_token(uow: UnitOfWork) -> tuple[str, str, bytes, str]:
            key = self.resolver.resolve(
                uow, caller, key_id, "ImportKeyMaterial", allow_alias=False, request=access
            )
            key.check_can_import("ImportKeyMaterial")
            token_id, parameters = key.import_parameters_for(import_token, self.clock.now())
            wrapping_key = self.vault.open_for_key(
                key.id,
                _IMPORT_WRAPPING_KEY_LABEL + token_id.encode(),
                parameters["wrapped_private_key"],
            )
            if wrapping_key is None:
                raise InvalidImportTokenError("The import token is not valid.")
            return token_id, str(parameters["wrapping_algorithm"]), wrapping_key, key.key_spec

        # Unwrapping and checking the material is RSA work (checking an RSA-4096 private
        # key alone takes ~0.5 s on a slow core): in a thread, between two commands, never
        # on the writer's event loop, which every request shares.
        opened = await self.runner.run(open_token)
        opened_token, wrapping_algorithm, wrapping_key, key_spec = opened
        material_bytes = await asyncio.to_thread(
            _unwrap_checked, wrapping_key, wrapping_algorithm, encrypted_key_material, key_spec
        )

        def command(uow: UnitOfWork) -> MaterialChange:
            key = self.resolver.resolve(
                uow, caller, key_id, "ImportKeyMaterial", allow_alias=False, request=access
            )
            key.check_can_import("ImportKeyMaterial")
            now = self.clock.now()
            token_id, _ = key.import_parameters_for(import_token, now)
            if token_id != opened_token:  # the key's import parameters changed meanwhile
                raise InvalidImportTokenError("The import token is not valid.")
            material_id = algorithms.imported_material_id(key.id.bytes, material_bytes)
            plan = key.plan_import(
                now=now,
                material_id=material_id,
                import_type=import_type,
                key_material_id=key_material_id,
                expiration_model=model,
                valid_to=valid_to,
            )
            earlier = key.imported_material(material_id)
            material = self.vault.new_material(
                key.id,
                version=plan.version,
                now=earlier.created if earlier else now,
                rotation_type=earlier.rotation_type
                if earlier
                else ("ON_DEMAND" if plan.pending_rotation else None),
                plaintext=material_bytes,
                material_id=material_id,
                imported=True,
            )
            key.import_material(
                now=now,
                actor=caller.actor(),
                token_id=token_id,
                plan=plan,
                material=material,
                expiration_model=model,
                valid_to=valid_to,
                description=description or "",
            )
            return MaterialChange(key.arn, material_id)

        return await self.runner.run(command)

    async def delete_imported_key_material(
        self, caller: Caller, key_id: str, key_material_id: str | None = None
    ) -> MaterialChange:
        """Shred the material (default: the current one) and record it; the key is
        PendingImport until the same material is imported again."""

        def command(uow: UnitOfWork) -> MaterialChange:
            key = self.resolver.resolve(
                uow, caller, key_id, "DeleteImportedKeyMaterial", allow_alias=False
            )
            material = key.material_to_delete(key_material_id)
            if material is None:
                return MaterialChange(key.arn, None)
            if key.is_material_imported(material.material_id):
                now = self.clock.now()
                # Shred first: if the commit then fails, the material is gone all the same.
                self.vault.shred_material(key.id, material, now)
                key.delete_imported_material(
                    now=now, actor=caller.actor(), material_id=material.material_id
                )
            return MaterialChange(key.arn, material.material_id)

        return await self.runner.run(command)

    def expiry_job(self, uow: UnitOfWork, *, key_uuid: uuid.UUID) -> int:
        """The scheduler's job: shred and record imported material whose ValidTo passed."""
        key: Key | None = uow.get(key_uuid, fresh=True)
        if key is None or key.is_deleted:
            return 0
        now = self.clock.now()
        done = 0
        for material_id in key.materials_due_for_expiry(now):
            material = key.imported_material(material_id)
            if material is None:
                raise IncorrectKeyMaterialError(f"material {material_id} is unknown")
            self.vault.shred_material(key.id, material, now)
            key.expire_material(now=now, actor=SERVICE_ACTOR, material_id=material_id)
            done += 1
        return done


def _unwrap_checked(
    wrapping_key: bytes, wrapping_algorithm: str, encrypted_key_material: bytes, key_spec: str
) -> bytes:
    """The imported material, unwrapped and checked against the key spec (canonical bytes)."""
    raw = algorithms.unwrap_imported_material(
        wrapping_key, wrapping_algorithm, encrypted_key_material
    )
    return algorithms.normalize_imported_material(key_spec, raw)
