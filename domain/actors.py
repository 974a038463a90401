"""Who asked for a change: the actor every event records for auditors.

An ``Actor`` is typed; an event stores ``actor.record()``, a plain dict. The record holds
exactly the fields that were given (a field left ``None`` is absent, a field given as ``""``
is recorded as ``""``), in declaration order, so the stored JSON is what it was when actors
were dicts: a signed caller records the seven request fields (plus ``via_service`` and
``service_principal_arn`` when a trusted service signed for it), KMS itself records
``principal_arn`` and ``service``, the operator only ``principal_arn``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

ActorRecord = dict[str, Any]
"""An actor as events store it and projections read it."""


@dataclass(frozen=True)
class Actor:
    principal_arn: str | None = None
    account_id: str | None = None
    access_key_id: str | None = None
    region: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    via_service: str | None = None  # kms:ViaService, when a trusted service signed for a caller
    service_principal_arn: str | None = None  # the service principal that signed
    service: str | None = None  # set when the service (KMS) itself acted
    # An assumed-role session's start (ISO 8601), CloudTrail's sessionContext.creationDate.
    session_created: str | None = None

    def record(self) -> ActorRecord:
        """The dict an event stores: the given fields, in declaration order."""
        return {name: value for name in _ACTOR_FIELDS if (value := getattr(self, name)) is not None}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Actor:
        """The actor a stored record describes (unknown keys are refused)."""
        return cls(**{name: str(value) for name, value in record.items()})


# In declaration order; looked up once (dataclasses.fields() builds a tuple per call).
_ACTOR_FIELDS = tuple(f.name for f in fields(Actor))
