"""The denial log in memory (app.ports.DenialLog), with the ``access_denials`` table's rules:
one record per (request id, action, resource), read newest first, filtered by principal,
resource and account (the account's principals' denials and denials on its keys)."""

from __future__ import annotations

import threading

from app.ports import DenialRecord


class MemoryDenialLog:
    def __init__(self) -> None:
        self._records: list[DenialRecord] = []
        self._seen: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()

    def record(self, record: DenialRecord) -> None:
        with self._lock:
            unique = (record.request_id, record.action, record.resource_arn)
            if unique not in self._seen:  # ON CONFLICT (...) DO NOTHING
                self._seen.add(unique)
                self._records.append(record)

    def flush(self, timeout: float = 10.0) -> bool:
        return True  # stored as recorded

    def close(self) -> None:
        return None

    def query(
        self,
        *,
        principal_arn: str | None = None,
        resource_arn: str | None = None,
        account_id: str | None = None,
        limit: int = 100,
    ) -> list[DenialRecord]:
        with self._lock:
            records = list(reversed(self._records))
        found = [
            record
            for record in records
            if (principal_arn is None or record.principal_arn == principal_arn)
            and (resource_arn is None or record.resource_arn == resource_arn)
            and (
                account_id is None
                or record.account_id == account_id
                or _arn_account(record.resource_arn) == account_id
            )
        ]
        return found[:limit]


def _arn_account(arn: str) -> str:
    """split_part(arn, ':', 5): the account field of an ARN ("" when there is none)."""
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 else ""
