"""The auditors' use cases: the audit trail, keys as of any time, last use, reports.

Behind every adapter (the CloudTrail protocol, GetKeyLastUsage on the KMS protocol, the
REST routes under /v1/audit, the CLI). Who may ask: the audit trail, time travel and the
reports need ``cloudtrail:LookupEvents`` (an identity policy; the auditor's permission) and
cover the caller's own account, or every account for principals of the operator account;
GetKeyLastUsage needs ``kms:GetKeyLastUsage`` on the key, as on AWS. The CLI runs as the
operator (``caller`` None).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from app.ports import AuditStore, Clock, CommandRunner, UnitOfWork
from app.usecases.authorization import AccessControl
from app.usecases.resolution import KeyResolver
from domain.audit import LOOKUP_EVENTS_WINDOW, InvalidNextTokenError, InvalidTimeRangeError
from domain.errors import InternalError, NotFoundError, ValidationError
from domain.identifiers import KEY_ID_PATTERN, parse_key_reference
from projections import reports
from projections.audit_queries import AuditFilter, AuditRow, Position
from projections.time_travel import KeyAsOf

if TYPE_CHECKING:
    from collections.abc import Iterator

    from app.auth.credentials import Caller

AUDITOR_ACTION = "cloudtrail:LookupEvents"
READ_YOUR_WRITES_SECONDS = 5.0
USAGE_HOURS = 48
MAX_USAGE_HOURS = 24 * 31


@dataclass(frozen=True)
class LastUsage:
    """GetKeyLastUsage's answer."""

    key_id: str
    key_arn: str
    key_creation_date: datetime
    tracking_start_date: datetime
    operation: str | None
    timestamp: datetime | None
    cloudtrail_event_id: str | None
    request_id: str | None


@dataclass(frozen=True)
class HourlyUsage:
    """One hour of a key's calls: requests per operation, and how many failed."""

    hour: datetime
    operations: dict[str, int]
    errors: int

    @property
    def requests(self) -> int:
        return sum(self.operations.values())


@dataclass(frozen=True)
class EventPage:
    rows: list[AuditRow]
    next_token: str | None


def encode_token(position: Position, query: AuditFilter) -> str:
    moment, notification_id, recipient = position
    payload = {
        "t": moment.isoformat(),
        "n": notification_id,
        "r": recipient,
        "q": query.fingerprint(),
    }
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def decode_token(token: str, query: AuditFilter) -> Position:
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        position = (datetime.fromisoformat(payload["t"]), int(payload["n"]), str(payload["r"]))
        fingerprint = payload["q"]
    except (ValueError, TypeError, KeyError):
        raise InvalidNextTokenError("Invalid NextToken.") from None
    if fingerprint != query.fingerprint():
        raise InvalidNextTokenError("The NextToken was issued for a query with other parameters.")
    return position


@dataclass(frozen=True)
class OnlineParts:
    """What the use cases for callers need beyond the read models (the running service's
    writer, authorization and key resolution); the CLI, the local operator, has none."""

    runner: CommandRunner
    access: AccessControl
    resolver: KeyResolver


class AuditService:
    def __init__(
        self,
        *,
        store: AuditStore,
        clock: Clock,
        operator_account: str | None,
        online: OnlineParts | None,
        wait_seconds: float = READ_YOUR_WRITES_SECONDS,
    ) -> None:
        """``online`` None serves the local operator only (the CLI: no callers, no root
        key needed)."""
        self.online = online
        self.store = store
        self.clock = clock
        self.operator_account = operator_account
        self.wait_seconds = wait_seconds

    def _online(self) -> OnlineParts:
        if self.online is None:
            raise InternalError("this use case needs the running service")
        return self.online

    # ==== who may ask =========================================================================
    async def scope(self, caller: Caller | None) -> str | None:
        """Authorize an auditor's read; the account it covers (None: every account)."""
        if caller is None:
            return None
        await self._online().access.authorize_account_action(caller, AUDITOR_ACTION)
        return None if caller.account_id == self.operator_account else caller.account_id

    async def _current(self) -> None:
        """Read-your-writes: wait (briefly) for the trail to include what was just recorded."""
        if self.wait_seconds > 0:
            await asyncio.to_thread(self.store.wait_for_current, self.wait_seconds)

    # ==== the trail ===========================================================================
    async def lookup(
        self,
        caller: Caller | None,
        query: AuditFilter,
        limit: int,
        token: str | None,
        *,
        window: timedelta | None = None,
    ) -> EventPage:
        """Records matching ``query`` in the caller's scope, newest first, a page at a time;
        with ``window``, only those of that long before now (the service clock)."""
        if query.start is not None and query.end is not None and query.start > query.end:
            raise InvalidTimeRangeError("Start time must not be after end time.")
        account = await self.scope(caller)
        scoped = replace(query, recipient_account=account) if account else query
        after = decode_token(token, scoped) if token else None
        searched = scoped  # the token names the query asked, not the window's moving start
        if window is not None:
            oldest = self.clock.now() - window
            if scoped.start is None or scoped.start < oldest:
                searched = replace(scoped, start=oldest)
        await self._current()
        rows = await asyncio.to_thread(self.store.find_events, searched, limit + 1, after)
        next_token = encode_token(rows[limit - 1].position, scoped) if len(rows) > limit else None
        return EventPage(rows[:limit], next_token)

    async def lookup_events(
        self, caller: Caller | None, query: AuditFilter, limit: int, token: str | None
    ) -> EventPage:
        """CloudTrail's LookupEvents: as ``lookup``, over the last 90 days only (Event
        history's window). A start time older than that finds what the window holds, as on
        AWS; the auditors' REST query and exports are not limited."""
        return await self.lookup(caller, query, limit, token, window=LOOKUP_EVENTS_WINDOW)

    async def export(self, caller: Caller | None, query: AuditFilter) -> Iterator[AuditRow]:
        """Every matching record in the caller's scope, oldest first (for files)."""
        account = await self.scope(caller)
        scoped = replace(query, recipient_account=account) if account else query
        await self._current()
        return self.store.iter_events(scoped, oldest_first=True)

    # ==== keys as of any time =================================================================
    async def key_as_of(self, caller: Caller | None, key_id: str, at: datetime) -> KeyAsOf:
        """A key's state, policy and grants at ``at``, from its events."""
        account = await self.scope(caller)
        key_uuid = _key_uuid(key_id, caller)
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        found = await asyncio.to_thread(self.store.key_as_of, key_uuid, at)
        if found is None or (account is not None and found.account_id != account):
            raise NotFoundError(f"Key '{key_id}' did not exist at {at.isoformat()}")
        return found

    async def who_can_decrypt_as_of(
        self, caller: Caller | None, key_id: str, at: datetime
    ) -> reports.Report:
        """The who-can-decrypt report under the key policy and grants the key had at
        ``at`` (identity policies as they are now)."""
        account = await self.scope(caller)
        key_uuid = _key_uuid(key_id, caller)
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        await self._current()
        found = await asyncio.to_thread(
            self.store.who_can_decrypt_as_of, key_uuid, at, account, self.clock.now()
        )
        if found is None:
            raise NotFoundError(f"Key '{key_id}' did not exist at {at.isoformat()}")
        return found

    # ==== usage per hour ======================================================================
    async def key_usage_by_hour(
        self, caller: Caller | None, key_arn: str, hours: int = USAGE_HOURS
    ) -> list[HourlyUsage]:
        """The key's calls per hour over the last ``hours`` hours (service clock), each
        hour present (zeros included), oldest first, from the trail's hourly rollups."""
        if not 1 <= hours <= MAX_USAGE_HOURS:
            raise ValidationError(f"hours must be between 1 and {MAX_USAGE_HOURS}")
        account = await self.scope(caller)
        end = self.clock.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        start = end - timedelta(hours=hours)
        await self._current()
        rows = await asyncio.to_thread(self.store.usage_by_hour, key_arn, start, end, account)
        by_hour: dict[datetime, dict[str, int]] = {}
        errors: dict[datetime, int] = {}
        for hour, operation, requests, failed in rows:
            by_hour.setdefault(hour, {})[operation] = requests
            errors[hour] = errors.get(hour, 0) + failed
        return [
            HourlyUsage(
                hour=start + timedelta(hours=index),
                operations=by_hour.get(start + timedelta(hours=index), {}),
                errors=errors.get(start + timedelta(hours=index), 0),
            )
            for index in range(hours)
        ]

    # ==== GetKeyLastUsage =====================================================================
    async def key_last_usage(self, caller: Caller, key_id: str) -> LastUsage:
        online = self._online()

        def command(uow: UnitOfWork) -> Any:
            return online.resolver.resolve(
                uow, caller, key_id, "GetKeyLastUsage", allow_alias=False, fresh=True
            )

        key = await online.runner.run(command)
        await self._current()
        row = await asyncio.to_thread(self.store.last_usage, key.id)
        return LastUsage(
            key_id=key.key_id,
            key_arn=key.arn,
            key_creation_date=key.creation_date,
            tracking_start_date=key.creation_date,  # tracked since the key's first event
            operation=row[0] if row else None,
            timestamp=row[1] if row else None,
            cloudtrail_event_id=str(row[2]) if row else None,
            request_id=row[3] if row else None,
        )

    # ==== reports =============================================================================
    async def report(
        self,
        caller: Caller | None,
        name: str,
        *,
        days: int = 90,
        key: str | None = None,
        month: str | None = None,
        cryptoperiods: Mapping[str, int] | None = None,
        account: str | None = None,
    ) -> reports.Report:
        """Report ``name``; ``account`` narrows an all-accounts view to one account."""
        if name not in reports.REPORTS:
            raise ValidationError(f"Unknown report '{name}'; reports: {', '.join(reports.REPORTS)}")
        account = await self.scope(caller) or account
        await self._current()
        return await asyncio.to_thread(
            self.store.report,
            name,
            account,
            self.clock.now(),
            days=days,
            key=key,
            month=month,
            cryptoperiods=cryptoperiods,
        )


def _key_uuid(key_id: str, caller: Caller | None) -> uuid.UUID:
    """A key id or key ARN (aliases name different keys over time: not accepted here)."""
    if KEY_ID_PATTERN.match(key_id):
        return uuid.UUID(key_id)
    if key_id.startswith("arn:"):
        ref = parse_key_reference(
            key_id, account_id=caller.account_id if caller else "", region="", allow_alias=False
        )
        if ref.key_uuid is not None:
            return ref.key_uuid
    raise ValidationError(f"'{key_id}' is not a key id or key ARN.")
