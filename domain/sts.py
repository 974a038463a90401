"""Temporary security credentials (AWS STS): assumed-role sessions and their tokens.

A session is self-describing: its token carries who the session is (account, role, session
name, access key id, issue and expiry times) and a MAC over that under a key only the vault
holds, so every worker process verifies it without a read and nobody can forge or alter
one. The session's secret access key is derived from the same key and the access key id;
it is never stored nor carried. Pure: the MAC is passed in.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from domain.errors import (
    AccessDeniedError,
    ExpiredTokenError,
    UnrecognizedClientError,
    ValidationError,
)

# AssumeRole's limits (botocore sts model: roleDurationSecondsType, roleSessionNameType;
# AWS's AssumeRole reference: default one hour, at most the role's maximum session
# duration, at most one hour when a role session assumes a role: role chaining).
MIN_DURATION_SECONDS = 900
MAX_DURATION_SECONDS = 43_200
DEFAULT_DURATION_SECONDS = 3_600
DEFAULT_MAX_SESSION_DURATION = 3_600
CHAINED_MAX_DURATION_SECONDS = 3_600
SESSION_NAME_PATTERN = re.compile(r"^[\w+=,.@-]{2,64}$")
TEMPORARY_KEY_PREFIX = "ASIA"  # AWS's prefix of temporary access key ids (long-term: AKIA)
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_TOKEN_VERSION = b"KLS1"
_MAC_BYTES = 32
# AWS's texts (KMS answers ExpiredTokenException / UnrecognizedClientException with them).
EXPIRED_TOKEN_MESSAGE = "The security token included in the request is expired"
INVALID_TOKEN_MESSAGE = "The security token included in the request is invalid."

Mac = Callable[[bytes], bytes]


@dataclass(frozen=True)
class RoleSession:
    """An assumed-role session: who it is and until when."""

    access_key_id: str
    account_id: str
    partition: str
    role_name: str
    role_id: str  # AROA...
    session_name: str
    issued_at: datetime
    expires_at: datetime

    @property
    def role_arn(self) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:role/{self.role_name}"

    @property
    def arn(self) -> str:
        """``arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION``, the session's principal."""
        return assumed_role_arn(self.partition, self.account_id, self.role_name, self.session_name)

    @property
    def assumed_role_id(self) -> str:
        """``AROA...:SESSION``: AssumedRoleUser.AssumedRoleId, GetCallerIdentity's UserId."""
        return f"{self.role_id}:{self.session_name}"

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


def assumed_role_arn(partition: str, account_id: str, role_name: str, session_name: str) -> str:
    return f"arn:{partition}:sts::{account_id}:assumed-role/{role_name}/{session_name}"


def new_temporary_access_key_id() -> str:
    return TEMPORARY_KEY_PREFIX + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))


def check_session_name(name: str) -> None:
    if not SESSION_NAME_PATTERN.match(name):
        raise ValidationError(
            f"1 validation error detected: Value '{name}' at 'roleSessionName' failed to "
            "satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
        )


def session_duration(requested: int | None, *, role_maximum: int, chained: bool) -> int:
    """The session's length in seconds, within AWS's rules (ValidationError otherwise)."""
    seconds = DEFAULT_DURATION_SECONDS if requested is None else requested
    if chained and seconds > CHAINED_MAX_DURATION_SECONDS:
        raise ValidationError(
            "The requested DurationSeconds exceeds the 1 hour session limit for roles "
            "assumed by role chaining."
        )
    if seconds > role_maximum:
        raise ValidationError(
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
        )
    return seconds


def check_max_session_duration(seconds: int) -> None:
    """A role's MaxSessionDuration: 1 to 12 hours (IAM's roleMaxSessionDurationType)."""
    if not DEFAULT_MAX_SESSION_DURATION <= seconds <= MAX_DURATION_SECONDS:
        raise ValidationError(
            f"MaxSessionDuration must be between {DEFAULT_MAX_SESSION_DURATION} and "
            f"{MAX_DURATION_SECONDS} seconds."
        )


def role_of(role_arn: str) -> tuple[str, str, str]:
    """(partition, account, role name) of a role ARN; AccessDeniedError for anything else
    (AWS answers AssumeRole of a role that is not one with AccessDenied)."""
    match = re.fullmatch(r"arn:(aws[a-z-]*):iam::(\d{12}):role/([\w+=,.@-]{1,64})", role_arn)
    if match is None:
        raise AccessDeniedError(f"Not authorized to perform sts:AssumeRole on {role_arn}")
    return match.group(1), match.group(2), match.group(3)


def start_session(
    *,
    account_id: str,
    partition: str,
    role_name: str,
    role_id: str,
    session_name: str,
    now: datetime,
    seconds: int,
) -> RoleSession:
    check_session_name(session_name)
    return RoleSession(
        access_key_id=new_temporary_access_key_id(),
        account_id=account_id,
        partition=partition,
        role_name=role_name,
        role_id=role_id,
        session_name=session_name,
        issued_at=now.replace(microsecond=0),
        expires_at=now.replace(microsecond=0) + timedelta(seconds=seconds),
    )


# ==== the token and the secret =============================================================
def encode_session_token(session: RoleSession, mac: Mac) -> str:
    payload = _TOKEN_VERSION + orjson.dumps(
        [
            session.access_key_id,
            session.account_id,
            session.partition,
            session.role_name,
            session.role_id,
            session.session_name,
            int(session.issued_at.timestamp()),
            int(session.expires_at.timestamp()),
        ]
    )
    return base64.b64encode(payload + mac(b"token:" + payload)).decode()


def decode_session_token(token: str, mac: Mac) -> RoleSession:
    """The session ``token`` describes, if this service issued it (UnrecognizedClientError
    otherwise); its expiry is the caller's to check."""
    try:
        raw = base64.b64decode(token.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise UnrecognizedClientError(INVALID_TOKEN_MESSAGE) from None
    payload, tag = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not payload.startswith(_TOKEN_VERSION) or not hmac.compare_digest(
        mac(b"token:" + payload), tag
    ):
        raise UnrecognizedClientError(INVALID_TOKEN_MESSAGE)
    fields = orjson.loads(payload[len(_TOKEN_VERSION) :])
    key_id, account, partition, role, role_id, name, issued, expires = fields
    return RoleSession(
        access_key_id=key_id,
        account_id=account,
        partition=partition,
        role_name=role,
        role_id=role_id,
        session_name=name,
        issued_at=datetime.fromtimestamp(issued, UTC),
        expires_at=datetime.fromtimestamp(expires, UTC),
    )


def session_secret(access_key_id: str, mac: Mac) -> str:
    """The session's secret access key: derived, so that no process stores it."""
    return base64.b64encode(mac(b"secret:" + access_key_id.encode())[:30]).decode()


def check_not_expired(session: RoleSession, now: datetime) -> None:
    if session.expired(now):
        raise ExpiredTokenError(EXPIRED_TOKEN_MESSAGE)
