"""Compliance reports over the auditors' read models (JSON and CSV).

* ``security-hub``: AWS Security Hub's KMS.1-KMS.5 controls, as their AWS Config rules
  decide them.
* ``cis-rotation``: CIS AWS Foundations 3.6 (v3/v5; 3.8 in v1.4, 2.8 in v1.2): rotation on
  for every customer-created symmetric key.
* ``pending-deletion``, ``unused-keys`` (``days``), ``cryptoperiod`` (NIST SP 800-57 Part 1
  Rev 5 defaults, configurable per key type), ``who-can-decrypt`` (``key``: the key policy,
  the identity policies of every known principal and the key's grants, decided by the
  access-control evaluator; a principal with an identity policy it cannot parse is listed as
  "could not evaluate", never left out), ``inventory`` (with each key's rotation history)
  and ``cost`` (``month``: AWS KMS's published pricing rules, per account).
* ``custom-key-stores``: every custom key store and the keys that live in it (which keys
  live in which store), with the state AWS reports for each key; ``unavailable-keys``:
  KeyLedger's own check (Security Hub has no control for custom key stores), the keys
  that are Unavailable because their store is not CONNECTED.

``account`` None reports on every account (the operator account's view).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from psycopg_pool import ConnectionPool

from domain import key_states
from domain.conditions import arn_match, glob_match
from domain.errors import (
    LimitExceededError,
    MalformedPolicyDocumentError,
    NotFoundError,
    ValidationError,
)
from domain.grants import Grant
from domain.keys import AWS_MANAGED, CUSTOMER
from domain.policy import IDENTITY_POLICY, KEY_POLICY, PolicyDocument, Statement, parse_policy
from domain.policy_evaluation import EXPLICIT_DENY, AuthorizationRequest, evaluate

if TYPE_CHECKING:
    from projections.time_travel import KeyAsOf

REPORTS = (
    "security-hub",
    "cis-rotation",
    "pending-deletion",
    "unused-keys",
    "cryptoperiod",
    "who-can-decrypt",
    "inventory",
    "cost",
    "custom-key-stores",
    "unavailable-keys",
)
PASSED, FAILED, NOT_APPLICABLE = "PASSED", "FAILED", "NOT_APPLICABLE"
COULD_NOT_EVALUATE = "could not evaluate"  # who-can-decrypt: a policy it cannot parse
GONE = (key_states.PENDING_DELETION, key_states.DELETED)

# NIST SP 800-57 Part 1 Rev 5, section 5.3, Table 1: suggested cryptoperiods (originator-usage
# periods; the upper end of each range). Override per key type with ``cryptoperiods``.
DEFAULT_CRYPTOPERIODS: dict[str, int] = {
    "symmetric-encryption": 730,  # symmetric data-encryption / key-wrapping key: <= 2 years
    "symmetric-authentication": 730,  # symmetric authentication (HMAC) key: <= 2 years
    "private-signature": 1095,  # private signature key: 1-3 years
    "private-key-transport": 730,  # private key-transport key: <= 2 years
    "key-agreement": 730,  # static key-agreement key: 1-2 years
    "key-encapsulation": 730,  # ML-KEM private key (key establishment): as key transport
}

# AWS KMS pricing (https://aws.amazon.com/kms/pricing/), USD.
KEY_MONTH = 1.00  # per customer managed key-month, prorated hourly
ROTATION_MONTH = 1.00  # the first and second rotations each add this (later ones are free)
FREE_REQUESTS = 20_000  # per account per month, across Regions
PER_10K = {
    "symmetric": 0.03,  # symmetric keys (and HMAC)
    "rsa-2048": 0.03,  # requests involving RSA 2048 keys
    "asymmetric": 0.15,  # other asymmetric keys
    "ecc-data-key-pair": 0.10,  # ECC GenerateDataKeyPair
    "rsa-data-key-pair": 12.00,  # RSA GenerateDataKeyPair (AWS's page; some calculators say 0.10)
}
DATA_KEY_PAIR_CALLS = ("GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext")
# Condition keys that tie a wildcard principal to named accounts or sources (KMS.5).
RESTRICTING_KEYS = frozenset(
    {
        "kms:calleraccount",
        "aws:principalaccount",
        "aws:principalarn",
        "aws:sourceaccount",
        "aws:sourcearn",
        "aws:principalorgid",
        "aws:sourceowner",
        "aws:sourcevpce",
        "aws:sourcevpc",
        "aws:userid",
    }
)
_ANY_KEYS = (
    "arn:aws:kms:zz-test-9:000000000000:key/00000000-0000-0000-0000-000000000000",
    "arn:aws:kms:yy-east-1:999999999999:key/ffffffff-ffff-ffff-ffff-ffffffffffff",
)


@dataclass(frozen=True)
class Report:
    name: str
    title: str
    generated_at: datetime
    scope: str  # an account id, or "all accounts"
    columns: tuple[str, ...]
    rows: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "report": self.name,
            "title": self.title,
            "generated_at": self.generated_at.isoformat(),
            "scope": self.scope,
            "summary": self.summary,
            "columns": list(self.columns),
            "rows": self.rows,
        }

    def as_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, default=_json_default)

    def as_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(self.columns), extrasaction="ignore")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({name: _cell(row.get(name)) for name in self.columns})
        return out.getvalue()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, default=_json_default)
    return "" if value is None else value


def _scope(account: str | None) -> str:
    return account or "all accounts"


def _keys(pool: ConnectionPool, account: str | None, *, include_deleted: bool = False) -> list[Any]:
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT key_id::text, arn, account_id, region, key_state, key_manager, key_spec,"
            " key_usage, origin, description, creation_date, deletion_date,"
            " current_material_version, current_material_id, current_material_created,"
            " rotation_enabled, rotation_period_days, next_rotation_date, aliases, tags, policy,"
            " last_used_operation, last_used_at, custom_key_store_id, xks_key_id"
            " FROM audit_key_state"
            " WHERE (%s::text IS NULL OR account_id = %s) AND (%s OR key_state <> %s)"
            " ORDER BY account_id, region, arn",
            (account, account, include_deleted, key_states.DELETED),
        ).fetchall()
    return [_KeyRow(*row) for row in rows]


@dataclass(frozen=True)
class _KeyRow:
    key_id: str
    arn: str
    account_id: str
    region: str
    key_state: str
    key_manager: str
    key_spec: str
    key_usage: str
    origin: str
    description: str
    creation_date: datetime
    deletion_date: datetime | None
    current_material_version: int
    current_material_id: str | None
    current_material_created: datetime | None
    rotation_enabled: bool
    rotation_period_days: int | None
    next_rotation_date: datetime | None
    aliases: list[str]
    tags: dict[str, str]
    policy: str
    last_used_operation: str | None
    last_used_at: datetime | None
    custom_key_store_id: str | None
    xks_key_id: str | None


def _rotation_checked(key: _KeyRow) -> bool:
    """The keys KMS.4 / CIS 3.6 apply to: customer managed, symmetric, AWS_KMS origin,
    not pending deletion."""
    return (
        key.key_manager == CUSTOMER
        and key.key_spec == "SYMMETRIC_DEFAULT"
        and key.origin == "AWS_KMS"
        and key.key_state not in GONE
    )


# ==== Security Hub KMS.1-KMS.5 ==================================================================
def _principal_policies(pool: ConnectionPool, account: str | None) -> list[Any]:
    with pool.connection() as conn:
        return conn.execute(
            "SELECT p.arn, p.account_id, p.principal_type, pp.policy_name, pp.policy"
            " FROM audit_principals p LEFT JOIN audit_principal_policies pp USING (principal_id)"
            " WHERE (%s::text IS NULL OR p.account_id = %s) ORDER BY p.arn, pp.policy_name",
            (account, account),
        ).fetchall()


def _allows_on_all_keys(statement: Statement, actions: Sequence[str]) -> bool:
    """An Allow statement granting any of ``actions`` on every KMS key (conditions ignored,
    as the Config rules ignore them)."""
    if statement.effect != "Allow":
        return False
    named = any(
        glob_match(pattern, action, ignore_case=True)
        for pattern in statement.actions
        for action in actions
    )
    if statement.not_action:
        named = not all(
            any(glob_match(pattern, action, ignore_case=True) for pattern in statement.actions)
            for action in actions
        )
    if not named or statement.not_resource:
        return False
    return any(
        pattern == "*" or all(arn_match(pattern, arn) for arn in _ANY_KEYS)
        for pattern in statement.resources
    )


def _public_statement(statement: Statement) -> bool:
    """An Allow for every principal that no condition ties to named accounts (KMS.5)."""
    if statement.effect != "Allow":
        return False
    everyone = (statement.principal is not None and statement.principal.any) or (
        statement.not_principal is not None
    )
    if not everyone:
        return False
    for condition in statement.conditions:
        fixed = all("*" not in v and "?" not in v and "${" not in v for v in condition.values)
        if condition.key in RESTRICTING_KEYS and fixed and not condition.if_exists:
            return False
    return True


def security_hub(pool: ConnectionPool, account: str | None, now: datetime) -> Report:
    rows: list[dict[str, Any]] = []

    def finding(
        control: str, title: str, severity: str, resource: str, status: str, reason: str
    ) -> None:
        rows.append(
            {
                "control": control,
                "title": title,
                "severity": severity,
                "resource": resource,
                "status": status,
                "reason": reason,
            }
        )

    finding(
        "KMS.1",
        "IAM customer managed policies should not allow decryption actions on all KMS keys",
        "Medium",
        "-",
        NOT_APPLICABLE,
        "KeyLedger principals have inline identity policies only (checked by KMS.2); there "
        "are no customer managed IAM policies",
    )
    blocked = ("kms:Decrypt", "kms:ReEncryptFrom")
    failing: dict[str, str] = {}
    principals: set[str] = set()
    for arn, _account, _kind, name, text in _principal_policies(pool, account):
        principals.add(arn)
        if text is None:
            continue
        try:
            document = parse_policy(text, kind=IDENTITY_POLICY, source=f"identity policy {name}")
        except Exception:
            continue
        for statement in document.statements:
            if _allows_on_all_keys(statement, blocked) and arn not in failing:
                failing[arn] = f"inline policy {name}, statement {statement.label}, allows " + (
                    "kms:Decrypt or kms:ReEncryptFrom on all KMS keys"
                )
    title2 = "IAM principals should not have IAM inline policies that allow decryption " + (
        "actions on all KMS keys"
    )
    for arn in sorted(principals):
        reason = failing.get(arn, "no inline policy allows decryption on all keys")
        finding("KMS.2", title2, "Medium", arn, FAILED if arn in failing else PASSED, reason)
    for key in _keys(pool, account):
        if key.key_manager != CUSTOMER:
            continue
        if key.key_state == key_states.PENDING_DELETION:
            when = key.deletion_date.isoformat() if key.deletion_date else "?"
            finding(
                "KMS.3",
                "AWS KMS keys should not be deleted unintentionally",
                "Critical",
                key.arn,
                FAILED,
                f"scheduled for deletion on {when}",
            )
        else:
            finding(
                "KMS.3",
                "AWS KMS keys should not be deleted unintentionally",
                "Critical",
                key.arn,
                PASSED,
                "not scheduled for deletion",
            )
        if _rotation_checked(key):
            ok = key.rotation_enabled
            finding(
                "KMS.4",
                "AWS KMS key rotation should be enabled",
                "Medium",
                key.arn,
                PASSED if ok else FAILED,
                f"automatic rotation every {key.rotation_period_days} days"
                if ok
                else "automatic rotation is off",
            )
        public = _public_reason(key.policy)
        finding(
            "KMS.5",
            "KMS keys should not be publicly accessible",
            "Critical",
            key.arn,
            FAILED if public else PASSED,
            public or "no statement allows every principal",
        )
    summary = {
        control: {
            status: sum(1 for r in rows if r["control"] == control and r["status"] == status)
            for status in (PASSED, FAILED)
        }
        for control in ("KMS.1", "KMS.2", "KMS.3", "KMS.4", "KMS.5")
    }
    return Report(
        "security-hub",
        "AWS Security Hub KMS controls (KMS.1-KMS.5)",
        now,
        _scope(account),
        ("control", "title", "severity", "resource", "status", "reason"),
        rows,
        summary,
    )


def _public_reason(policy: str) -> str | None:
    try:
        document = parse_policy(policy, kind=KEY_POLICY)
    except Exception:
        return "the key policy cannot be read"  # AWS Config fails the rule then too
    for statement in document.statements:
        if _public_statement(statement):
            return (
                f"statement {statement.label} allows every principal without an account condition"
            )
    return None


# ==== CIS rotation ==============================================================================
def cis_rotation(pool: ConnectionPool, account: str | None, now: datetime) -> Report:
    rows = [
        {
            "key_arn": key.arn,
            "account_id": key.account_id,
            "key_state": key.key_state,
            "rotation_enabled": key.rotation_enabled,
            "rotation_period_days": key.rotation_period_days,
            "next_rotation_date": key.next_rotation_date,
            "status": PASSED if key.rotation_enabled else FAILED,
        }
        for key in _keys(pool, account)
        if _rotation_checked(key)
    ]
    failed = sum(1 for row in rows if row["status"] == FAILED)
    return Report(
        "cis-rotation",
        "CIS AWS Foundations 3.6: rotation is enabled for customer-created symmetric keys",
        now,
        _scope(account),
        (
            "key_arn",
            "account_id",
            "key_state",
            "rotation_enabled",
            "rotation_period_days",
            "next_rotation_date",
            "status",
        ),
        rows,
        {"keys": len(rows), "failed": failed, "status": FAILED if failed else PASSED},
    )


# ==== pending deletion, unused keys =============================================================
def pending_deletion(pool: ConnectionPool, account: str | None, now: datetime) -> Report:
    with pool.connection() as conn:
        scheduled: dict[str, list[Any]] = dict(
            conn.execute(
                "SELECT DISTINCT ON (key_id) key_id::text, jsonb_build_array(principal_arn,"
                " changed_at) FROM audit_key_states WHERE event_name = 'ScheduleKeyDeletion'"
                " ORDER BY key_id, version DESC"
            ).fetchall()
        )
    rows = []
    for key in _keys(pool, account):
        if key.key_state != key_states.PENDING_DELETION:
            continue
        by, at = scheduled.get(key.key_id, ["", None])
        left = (key.deletion_date - now).total_seconds() / 86400 if key.deletion_date else None
        rows.append(
            {
                "key_arn": key.arn,
                "account_id": key.account_id,
                "key_manager": key.key_manager,
                "deletion_date": key.deletion_date,
                "days_left": round(left, 2) if left is not None else None,
                "scheduled_by": by,
                "scheduled_at": at,
                "aliases": key.aliases,
                "last_used_at": key.last_used_at,
            }
        )
    return Report(
        "pending-deletion",
        "Keys pending deletion",
        now,
        _scope(account),
        (
            "key_arn",
            "account_id",
            "key_manager",
            "deletion_date",
            "days_left",
            "scheduled_by",
            "scheduled_at",
            "aliases",
            "last_used_at",
        ),
        rows,
        {"keys": len(rows)},
    )


def unused_keys(pool: ConnectionPool, account: str | None, now: datetime, days: int) -> Report:
    if days < 0:
        raise ValidationError("days must be 0 or more")
    cutoff = now - timedelta(days=days)
    rows = []
    for key in _keys(pool, account):
        last = key.last_used_at
        since = last or key.creation_date
        if since > cutoff:
            continue
        rows.append(
            {
                "key_arn": key.arn,
                "account_id": key.account_id,
                "key_state": key.key_state,
                "key_manager": key.key_manager,
                "creation_date": key.creation_date,
                "last_used_at": last,
                "last_used_operation": key.last_used_operation,
                "days_unused": int((now - since).total_seconds() // 86400),
                "never_used": last is None,
            }
        )
    return Report(
        "unused-keys",
        f"Keys not used for {days} days or more",
        now,
        _scope(account),
        (
            "key_arn",
            "account_id",
            "key_state",
            "key_manager",
            "creation_date",
            "last_used_at",
            "last_used_operation",
            "days_unused",
            "never_used",
        ),
        rows,
        {"days": days, "keys": len(rows)},
    )


# ==== cryptoperiods =============================================================================
def key_type(key_spec: str, key_usage: str) -> str:
    """The NIST SP 800-57 key type a KMS key's private or secret material is."""
    if key_spec == "SYMMETRIC_DEFAULT":
        return "symmetric-encryption"
    if key_spec.startswith("HMAC_"):
        return "symmetric-authentication"
    return {
        "SIGN_VERIFY": "private-signature",
        "ENCRYPT_DECRYPT": "private-key-transport",
        "KEY_AGREEMENT": "key-agreement",
    }.get(key_usage, "key-encapsulation")


def cryptoperiod(
    pool: ConnectionPool,
    account: str | None,
    now: datetime,
    periods: Mapping[str, int] | None = None,
) -> Report:
    limits = {**DEFAULT_CRYPTOPERIODS, **(periods or {})}
    unknown = set(periods or {}) - set(DEFAULT_CRYPTOPERIODS)
    if unknown:
        raise ValidationError(
            f"Unknown key type(s) {sorted(unknown)}; known: {sorted(DEFAULT_CRYPTOPERIODS)}"
        )
    rows = []
    for key in _keys(pool, account):
        if key.key_state in GONE or key.current_material_created is None:
            continue
        kind = key_type(key.key_spec, key.key_usage)
        age = (now - key.current_material_created).total_seconds() / 86400
        limit = limits[kind]
        rows.append(
            {
                "key_arn": key.arn,
                "account_id": key.account_id,
                "key_spec": key.key_spec,
                "key_usage": key.key_usage,
                "key_type": kind,
                "material_id": key.current_material_id,
                "material_created": key.current_material_created,
                "age_days": int(age),
                "cryptoperiod_days": limit,
                "past_cryptoperiod": age > limit,
                "rotation_enabled": key.rotation_enabled,
            }
        )
    past = sum(1 for row in rows if row["past_cryptoperiod"])
    return Report(
        "cryptoperiod",
        "Keys past their cryptoperiod (NIST SP 800-57 Part 1 Rev 5)",
        now,
        _scope(account),
        (
            "key_arn",
            "account_id",
            "key_spec",
            "key_usage",
            "key_type",
            "material_id",
            "material_created",
            "age_days",
            "cryptoperiod_days",
            "past_cryptoperiod",
            "rotation_enabled",
        ),
        rows,
        {"keys": len(rows), "past_cryptoperiod": past, "cryptoperiods_days": limits},
    )


# ==== who can decrypt ===========================================================================
def _context(principal_arn: str, account: str) -> dict[str, tuple[str, ...]]:
    return {
        "aws:principalarn": (principal_arn,),
        "aws:principalaccount": (account,),
        "kms:calleraccount": (account,),
    }


def who_can_decrypt(
    pool: ConnectionPool,
    account: str | None,
    now: datetime,
    key_ref: str,
    *,
    as_of: KeyAsOf | None = None,
) -> Report:
    """Who can decrypt with the key now; with ``as_of`` (the key at a past moment, from
    projections.time_travel), under the key policy and grants it had then (identity
    policies are read as they are now: the summary says so)."""
    with pool.connection() as conn:
        found = conn.execute(
            "SELECT key_id::text, arn, account_id, policy, key_state FROM audit_keys"
            " WHERE (key_id::text = %s OR arn = %s) AND (%s::text IS NULL OR account_id = %s)",
            (key_ref, key_ref, account, account),
        ).fetchone()
        if found is None:
            raise NotFoundError(f"Key '{key_ref}' does not exist")
        key_id, key_arn, key_account, policy_text, state = found
        grants: list[Any] = conn.execute(
            "SELECT grant_id, name, grantee_principal, retiring_principal, operations,"
            " constraints, issuing_account FROM audit_key_grants WHERE key_id = %s"
            " AND ended_at IS NULL",
            (key_id,),
        ).fetchall()
        principal_rows = conn.execute(
            "SELECT p.arn, p.account_id, coalesce(jsonb_object_agg(pp.policy_name, pp.policy)"
            "  FILTER (WHERE pp.policy_name IS NOT NULL), '{}'::jsonb)"
            " FROM audit_principals p LEFT JOIN audit_principal_policies pp USING (principal_id)"
            " GROUP BY p.arn, p.account_id ORDER BY p.arn"
        ).fetchall()
    if as_of is not None:  # the key's own policy, state and grants at that moment
        policy_text, state = as_of.policy, as_of.key_state
        grants = [
            (
                g["grant_id"],
                g.get("name") or "",
                g["grantee_principal"],
                g.get("retiring_principal"),
                list(g["operations"]),
                g.get("constraints"),
                g["issuing_account"],
            )
            for g in as_of.grants
        ]
    partition = key_arn.split(":", 2)[1]
    key_policy = parse_policy(policy_text, kind=KEY_POLICY, partition=partition)
    grant_objects = tuple(
        Grant.from_record(
            {
                "grant_id": g[0],
                "key_id": key_id,
                "name": g[1],
                "grantee_principal": g[2],
                "retiring_principal": g[3],
                "operations": g[4],
                "constraints": g[5],
                "issuing_account": g[6],
            }
        )
        for g in grants
    )
    rows: list[dict[str, Any]] = []
    known = set()
    unevaluated = 0
    for arn, principal_account, policies in principal_rows:
        known.add(arn)
        identity: list[PolicyDocument] = []
        unparsed: list[str] = []
        for name, text in sorted(policies.items()):
            try:
                identity.append(
                    parse_policy(
                        text,
                        kind=IDENTITY_POLICY,
                        source=f"identity policy {name}",
                        partition=partition,
                    )
                )
            except (MalformedPolicyDocumentError, LimitExceededError) as error:
                unparsed.append(f"identity policy {name} could not be parsed: {error.message}")
        if unparsed:
            # Left out, it may have allowed or denied: the answer for this principal is
            # unknown, and the report says so rather than answering from its other policies.
            unevaluated += 1
            rows.append(
                {
                    "principal": arn,
                    "account_id": principal_account,
                    "access": COULD_NOT_EVALUATE,
                    "basis": "; ".join(unparsed),
                }
            )
            continue
        request = AuthorizationRequest(
            principal_arn=arn,
            principal_account=principal_account,
            action="kms:Decrypt",
            resource_arn=key_arn,
            resource_account=key_account,
            context=_context(arn, principal_account),
        )
        decision = evaluate(
            request,
            key_policy=key_policy,
            identity_policies=identity,
            grants=grant_objects,
            explain=True,
        )
        if decision.allowed:
            access, basis = "yes", decision.reason
        else:
            conditional = [
                t
                for t in decision.trace
                if t.principal != "not named"
                and t.action_matches
                and t.resource_matches
                and t.failed_condition
                and t.statement.effect == "Allow"
            ]
            constrained = [
                g
                for g in grant_objects
                if g.grantee_principal == arn and "Decrypt" in g.operations and g.constraints
            ]
            if decision.outcome == EXPLICIT_DENY:
                continue
            if conditional:
                access = "conditional"
                basis = "; ".join(
                    f"{t.statement.describe()} when {t.failed_condition}" for t in conditional
                )
            elif constrained:
                access = "conditional"
                basis = "; ".join(
                    f"grant {g.grant_id} with an encryption context constraint" for g in constrained
                )
            else:
                continue
        rows.append(
            {"principal": arn, "account_id": principal_account, "access": access, "basis": basis}
        )
    for statement in key_policy.statements:
        if statement.effect != "Allow" or not any(
            glob_match(a, "kms:Decrypt", ignore_case=True) for a in statement.actions
        ):
            continue
        if statement.principal is not None and statement.principal.any:
            rows.append(
                {
                    "principal": "*",
                    "account_id": "*",
                    "access": "conditional" if statement.conditions else "yes",
                    "basis": f"key policy statement {statement.label} names every principal",
                }
            )
        for named in sorted(statement.principal.aws if statement.principal else frozenset()):
            if named in known:
                continue
            root = named.endswith(":root")
            rows.append(
                {
                    "principal": named,
                    "account_id": named.split(":")[4],
                    "access": "if its identity policies allow"
                    if root
                    else ("conditional" if statement.conditions else "yes"),
                    "basis": f"key policy statement {statement.label} names "
                    + ("the account" if root else "it"),
                }
            )
    for grant in grant_objects:
        if "Decrypt" in grant.operations and grant.grantee_principal not in known:
            rows.append(
                {
                    "principal": grant.grantee_principal,
                    "account_id": grant.grantee_principal.split(":")[4]
                    if grant.grantee_principal.count(":") >= 4
                    else "",
                    "access": "conditional" if grant.constraints else "yes",
                    "basis": f"grant {grant.grant_id}",
                }
            )
    summary: dict[str, Any] = {
        "key_arn": key_arn,
        "key_state": state,
        "principals": len(rows),
        "evaluated_principals": len(known) - unevaluated,
        "could_not_evaluate": unevaluated,
    }
    title = f"Who can decrypt with {key_arn}"
    if as_of is not None:
        title += f" as of {as_of.as_of.isoformat()}"
        summary["as_of"] = as_of.as_of.isoformat()
        summary["identity_policies"] = "as they are now"
    return Report(
        "who-can-decrypt",
        title,
        now,
        _scope(account),
        ("principal", "account_id", "access", "basis"),
        rows,
        summary,
    )


# ==== inventory =================================================================================
def inventory(pool: ConnectionPool, account: str | None, now: datetime) -> Report:
    with pool.connection() as conn:
        histories: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for key_id, version, material_id, created, rotation_type, imported in conn.execute(
            "SELECT key_id::text, version, material_id, created_at, rotation_type, imported"
            " FROM audit_key_materials ORDER BY key_id, version"
        ):
            histories[key_id].append(
                {
                    "version": version,
                    "material_id": material_id,
                    "created": created.isoformat(),
                    "rotation_type": rotation_type or "ORIGINAL",
                    "imported": imported,
                }
            )
    rows = []
    for key in _keys(pool, account, include_deleted=True):
        history = histories.get(key.key_id, [])
        rows.append(
            {
                "key_arn": key.arn,
                "account_id": key.account_id,
                "region": key.region,
                "key_state": key.key_state,
                "key_manager": key.key_manager,
                "key_spec": key.key_spec,
                "key_usage": key.key_usage,
                "origin": key.origin,
                "custom_key_store_id": key.custom_key_store_id,
                "description": key.description,
                "creation_date": key.creation_date,
                "aliases": key.aliases,
                "tags": key.tags,
                "rotation_enabled": key.rotation_enabled,
                "rotation_period_days": key.rotation_period_days,
                "next_rotation_date": key.next_rotation_date,
                "rotations": sum(1 for m in history if m["rotation_type"] != "ORIGINAL"),
                "last_rotated": next(
                    (m["created"] for m in reversed(history) if m["rotation_type"] != "ORIGINAL"),
                    None,
                ),
                "rotation_history": history,
                "last_used_at": key.last_used_at,
                "last_used_operation": key.last_used_operation,
            }
        )
    return Report(
        "inventory",
        "Key inventory with rotation history",
        now,
        _scope(account),
        (
            "key_arn",
            "account_id",
            "region",
            "key_state",
            "key_manager",
            "key_spec",
            "key_usage",
            "origin",
            "custom_key_store_id",
            "description",
            "creation_date",
            "aliases",
            "tags",
            "rotation_enabled",
            "rotation_period_days",
            "next_rotation_date",
            "rotations",
            "last_rotated",
            "rotation_history",
            "last_used_at",
            "last_used_operation",
        ),
        rows,
        {"keys": len(rows)},
    )


# ==== custom key stores =========================================================================
UNAVAILABLE = "Unavailable"  # AWS's state of a key whose custom key store is not CONNECTED
CONNECTED = "CONNECTED"
USABLE_STATES = (key_states.ENABLED, key_states.DISABLED)  # the states Unavailable hides


@dataclass(frozen=True)
class _StoreRow:
    store_id: str
    account_id: str
    region: str
    name: str
    store_type: str
    cloud_hsm_cluster_id: str | None
    xks_proxy_uri_endpoint: str | None
    xks_proxy_uri_path: str | None
    connection_state: str
    connection_error_code: str | None
    state_since: datetime


def _stores(pool: ConnectionPool, account: str | None) -> list[_StoreRow]:
    """The stores not deleted, each with when its connection state last changed."""
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT c.store_id, c.account_id, c.region, c.name, c.store_type,"
            " c.cloud_hsm_cluster_id, c.xks_proxy_uri_endpoint, c.xks_proxy_uri_path,"
            " c.connection_state, c.connection_error_code,"
            " coalesce(max(s.changed_at), c.creation_date)"
            " FROM audit_custom_key_stores c LEFT JOIN audit_custom_key_store_states s"
            "  USING (store_aggregate_id)"
            " WHERE c.deleted_at IS NULL AND (%s::text IS NULL OR c.account_id = %s)"
            " GROUP BY c.store_aggregate_id ORDER BY c.account_id, c.region, c.store_id",
            (account, account),
        ).fetchall()
    return [_StoreRow(*row) for row in rows]


def reported_state(key: _KeyRow, store: _StoreRow | None) -> str:
    """The key state AWS reports: Unavailable while an Enabled or Disabled key's custom
    key store is not CONNECTED (a key pending deletion stays PendingDeletion)."""
    if key.custom_key_store_id is None or key.key_state not in USABLE_STATES:
        return key.key_state
    return (
        key.key_state if store is not None and store.connection_state == CONNECTED else UNAVAILABLE
    )


def _keys_by_store(
    pool: ConnectionPool, account: str | None
) -> tuple[list[_StoreRow], dict[tuple[str, str, str], list[_KeyRow]]]:
    """The stores, and the keys (not deleted) of each, by (account, Region, store id)."""
    keys: dict[tuple[str, str, str], list[_KeyRow]] = defaultdict(list)
    for key in _keys(pool, account):
        if key.custom_key_store_id is not None:
            keys[(key.account_id, key.region, key.custom_key_store_id)].append(key)
    return _stores(pool, account), keys


STORE_COLUMNS = (
    "custom_key_store_id",
    "custom_key_store_name",
    "custom_key_store_type",
    "connection_state",
    "connection_error_code",
    "cloud_hsm_cluster_id",
    "xks_proxy_uri_endpoint",
    "account_id",
    "region",
)


def _store_columns(store: _StoreRow) -> dict[str, Any]:
    return {
        "custom_key_store_id": store.store_id,
        "custom_key_store_name": store.name,
        "custom_key_store_type": store.store_type,
        "connection_state": store.connection_state,
        "connection_error_code": store.connection_error_code,
        "cloud_hsm_cluster_id": store.cloud_hsm_cluster_id,
        "xks_proxy_uri_endpoint": store.xks_proxy_uri_endpoint,
        "account_id": store.account_id,
        "region": store.region,
    }


def custom_key_stores(pool: ConnectionPool, account: str | None, now: datetime) -> Report:
    """Which keys live in which store: a row per key of each store (a store without keys
    has one row, its key columns empty)."""
    stores, keys = _keys_by_store(pool, account)
    rows: list[dict[str, Any]] = []
    unavailable = 0
    for store in stores:
        held: list[_KeyRow | None] = [
            *keys.get((store.account_id, store.region, store.store_id), [])
        ]
        for key in held or [None]:
            row = {**_store_columns(store), "key_arn": None, "key_state": None, "xks_key_id": None}
            if key is not None:
                state = reported_state(key, store)
                if state == UNAVAILABLE:
                    unavailable += 1
                row.update(key_arn=key.arn, key_state=state, xks_key_id=key.xks_key_id)
            rows.append(row)
    return Report(
        "custom-key-stores",
        "Custom key stores and the keys in each",
        now,
        _scope(account),
        (*STORE_COLUMNS, "key_arn", "key_state", "xks_key_id"),
        rows,
        {
            "stores": len(stores),
            "keys": sum(1 for row in rows if row["key_arn"]),
            "unavailable_keys": unavailable,
        },
    )


def unavailable_keys(pool: ConnectionPool, account: str | None, now: datetime) -> Report:
    """KeyLedger's own check: the keys no cryptographic operation can use because their
    custom key store is not CONNECTED (disconnected on purpose, or a failed connection)."""
    stores, keys = _keys_by_store(pool, account)
    rows = []
    for store in stores:
        for key in keys.get((store.account_id, store.region, store.store_id), []):
            if reported_state(key, store) != UNAVAILABLE:
                continue
            rows.append(
                {
                    "key_arn": key.arn,
                    **_store_columns(store),
                    "key_state": key.key_state,
                    "unavailable_since": store.state_since,
                    "last_used_at": key.last_used_at,
                }
            )
    return Report(
        "unavailable-keys",
        "KeyLedger check (no Security Hub control): keys Unavailable because their custom"
        " key store is not connected",
        now,
        _scope(account),
        ("key_arn", *STORE_COLUMNS, "key_state", "unavailable_since", "last_used_at"),
        rows,
        {
            "keys": len(rows),
            "stores": len({row["custom_key_store_id"] for row in rows}),
            "status": FAILED if rows else PASSED,
        },
    )


# ==== cost ======================================================================================
def month_bounds(month: str) -> tuple[datetime, datetime]:
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise ValidationError(f"month must be YYYY-MM, not '{month}'") from None
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def _price_class(operation: str, key_spec: str | None) -> str:
    if operation in DATA_KEY_PAIR_CALLS:
        return "ecc-data-key-pair"  # the pair's spec is not recorded: priced as ECC (see doc)
    if key_spec is None or key_spec == "SYMMETRIC_DEFAULT" or key_spec.startswith("HMAC_"):
        return "symmetric"
    if key_spec == "RSA_2048":
        return "rsa-2048"
    return "asymmetric"


def _key_month_charges(
    timeline: list[tuple[datetime, str]],
    rotations: list[datetime],
    start: datetime,
    end: datetime,
) -> tuple[float, float]:
    """(key-months billed, rotation surcharge key-months) of one key within [start, end)."""
    points = sorted(
        {
            start,
            end,
            *(t for t, _ in timeline if start < t < end),
            *(r for r in rotations if start < r < end),
        }
    )
    hours_in_month = (end - start).total_seconds() / 3600
    base = surcharge = 0.0
    for left, right in itertools.pairwise(points):
        state = None
        for moment, value in timeline:
            if moment <= left:
                state = value
        if state is None or state in GONE:
            continue
        share = (right - left).total_seconds() / 3600 / hours_in_month
        done = sum(1 for r in rotations if r <= left)
        base += share
        surcharge += share * min(done, 2)
    return base, surcharge


def cost(pool: ConnectionPool, account: str | None, now: datetime, month: str) -> Report:
    start, end = month_bounds(month)
    with pool.connection() as conn:
        keys = conn.execute(
            "SELECT key_id::text, arn, account_id, key_manager, key_spec FROM audit_keys"
            " WHERE creation_date < %s AND (%s::text IS NULL OR account_id = %s)",
            (end, account, account),
        ).fetchall()
        timelines: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
        for key_id, at, state in conn.execute(
            "SELECT key_id::text, changed_at, key_state FROM audit_key_states"
            " WHERE changed_at < %s ORDER BY key_id, version",
            (end,),
        ):
            timelines[key_id].append((at, state))
        rotations: dict[str, list[datetime]] = defaultdict(list)
        for key_id, at in conn.execute(
            "SELECT key_id::text, created_at FROM audit_key_materials"
            " WHERE rotation_type IS NOT NULL AND created_at < %s ORDER BY key_id, created_at",
            (end,),
        ):
            rotations[key_id].append(at)
        usage = conn.execute(
            "SELECT u.caller_account_id, u.operation, k.key_spec,"
            " sum(u.requests - u.errors)::bigint FROM audit_usage_hourly u"
            " LEFT JOIN audit_keys k ON k.arn = u.key_arn AND u.key_arn <> ''"
            " WHERE u.hour >= %s AND u.hour < %s AND (%s::text IS NULL OR u.caller_account_id = %s)"
            " AND u.operation <> 'ReEncrypt'"
            " GROUP BY 1, 2, 3",
            (start, end, account, account),
        ).fetchall()
        # The rollups count a ReEncrypt under both its keys; AWS bills the call once: count
        # the caller's copy of each record, priced by its source key.
        usage += conn.execute(
            "SELECT e.account_id, e.event_name, k.key_spec, count(*)::bigint"
            " FROM audit_events e LEFT JOIN audit_keys k ON k.arn = e.resource_arn"
            " WHERE e.event_name = 'ReEncrypt' AND e.event_source = 'kms.amazonaws.com'"
            " AND e.error_code IS NULL AND e.recipient_account_id = e.account_id"
            " AND e.event_time >= %s AND e.event_time < %s"
            " AND (%s::text IS NULL OR e.account_id = %s) GROUP BY 1, 2, 3",
            (start, end, account, account),
        ).fetchall()
    accounts: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "customer_keys": 0,
            "key_months": 0.0,
            "rotation_key_months": 0.0,
            "requests": defaultdict(int),
        }
    )
    for key_id, _arn, owner, manager, _spec in keys:
        if manager == AWS_MANAGED:
            continue  # no storage fee for AWS managed keys
        base, surcharge = _key_month_charges(
            timelines.get(key_id, []), rotations.get(key_id, []), start, end
        )
        entry = accounts[owner]
        if base > 0:
            entry["customer_keys"] += 1
        entry["key_months"] += base
        entry["rotation_key_months"] += surcharge
    for caller_account, operation, key_spec, count in usage:
        accounts[caller_account]["requests"][_price_class(operation, key_spec)] += int(count)
    rows = []
    for account_id in sorted(accounts):
        entry = accounts[account_id]
        requests: dict[str, int] = entry["requests"]
        free = FREE_REQUESTS
        billed: dict[str, int] = {}
        for kind in (
            "symmetric",
            "rsa-2048",
            "ecc-data-key-pair",
            "asymmetric",
            "rsa-data-key-pair",
        ):
            count = requests.get(kind, 0)
            waived = min(free, count)
            free -= waived
            billed[kind] = count - waived
        request_usd = sum(billed[k] / 10_000 * PER_10K[k] for k in billed)
        storage = entry["key_months"] * KEY_MONTH
        rotation = entry["rotation_key_months"] * ROTATION_MONTH
        rows.append(
            {
                "account_id": account_id,
                "month": month,
                "customer_managed_keys": entry["customer_keys"],
                "key_months": round(entry["key_months"], 4),
                "key_storage_usd": round(storage, 2),
                "rotation_usd": round(rotation, 2),
                "symmetric_requests": requests.get("symmetric", 0),
                "rsa_2048_requests": requests.get("rsa-2048", 0),
                "asymmetric_requests": requests.get("asymmetric", 0),
                "data_key_pair_requests": requests.get("ecc-data-key-pair", 0),
                "free_tier_requests": FREE_REQUESTS - free,
                "requests_usd": round(request_usd, 2),
                "total_usd": round(storage + rotation + request_usd, 2),
            }
        )
    return Report(
        "cost",
        f"Monthly cost estimate, {month} (AWS KMS pricing)",
        now,
        _scope(account),
        (
            "account_id",
            "month",
            "customer_managed_keys",
            "key_months",
            "key_storage_usd",
            "rotation_usd",
            "symmetric_requests",
            "rsa_2048_requests",
            "asymmetric_requests",
            "data_key_pair_requests",
            "free_tier_requests",
            "requests_usd",
            "total_usd",
        ),
        rows,
        {
            "pricing": {
                "key_month_usd": KEY_MONTH,
                "rotation_month_usd": ROTATION_MONTH,
                "free_requests": FREE_REQUESTS,
                "per_10k_requests_usd": PER_10K,
            },
            "notes": [
                "key storage is prorated hourly; keys pending deletion are not charged",
                "the first and second rotations each add $1/month; later ones are free",
                "GenerateDataKeyPair requests are priced as ECC pairs (the pair spec is "
                "not recorded)",
                "successful requests are counted, by the calling account",
            ],
        },
    )


def report(
    name: str,
    pool: ConnectionPool,
    account: str | None,
    now: datetime,
    *,
    days: int = 90,
    key: str | None = None,
    month: str | None = None,
    cryptoperiods: Mapping[str, int] | None = None,
) -> Report:
    """Run the report called ``name`` (one of REPORTS)."""
    if name == "security-hub":
        return security_hub(pool, account, now)
    if name == "cis-rotation":
        return cis_rotation(pool, account, now)
    if name == "pending-deletion":
        return pending_deletion(pool, account, now)
    if name == "unused-keys":
        return unused_keys(pool, account, now, days)
    if name == "cryptoperiod":
        return cryptoperiod(pool, account, now, cryptoperiods)
    if name == "who-can-decrypt":
        if not key:
            raise ValidationError("The who-can-decrypt report needs a key (key id or ARN).")
        return who_can_decrypt(pool, account, now, key)
    if name == "inventory":
        return inventory(pool, account, now)
    if name == "cost":
        return cost(pool, account, now, month or now.strftime("%Y-%m"))
    if name == "custom-key-stores":
        return custom_key_stores(pool, account, now)
    if name == "unavailable-keys":
        return unavailable_keys(pool, account, now)
    raise ValidationError(f"Unknown report '{name}'; reports: {', '.join(REPORTS)}")
