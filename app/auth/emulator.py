"""Emulator mode's callers (docs/emulator.md): any access key id, LocalStack's accounts.

Chosen once, when the service is wired (app/bootstrap.py): normal mode never reaches this
module. A request is parsed and its time and scope checked exactly as in normal mode (a
malformed Authorization header, a missing date or an expired presigned URL fail the same
way), but its signature is not verified against any stored secret. Temporary credentials
(STS AssumeRole) are still verified: their secret is derived, not stored.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

from app.auth.credentials import Credential, IdentityDirectory
from app.auth.sigv4 import IncomingRequest, VerifiedCaller, parse_request_unverified
from domain.identity import principal_arn

__all__ = ["EmulatorIdentityDirectory", "emulated_account"]

_ACCOUNT_KEY_RE = re.compile(r"[0-9]{12}")


def emulated_account(access_key_id: str, default_account_id: str) -> str:
    """LocalStack's convention: a 12-digit access key id is the account id; any other
    (moto's FOOBARKEY, LocalStack's test) belongs to the default account."""
    return access_key_id if _ACCOUNT_KEY_RE.fullmatch(access_key_id) else default_account_id


class EmulatorIdentityDirectory(IdentityDirectory):
    """An IdentityDirectory that takes any access key id as its account's administrator,
    creating the account and administrator (through the writer, so audited) on first use."""

    def __init__(self, *args: object, default_account_id: str, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.default_account_id = default_account_id
        self._ready_accounts: set[str] = set()

    def forget_emulated_accounts(self) -> None:
        """After a reset: every account must be created again on its next use."""
        self._ready_accounts.clear()
        self._principals.forget_all()
        self.forget_credentials()

    async def _verify(
        self, request: IncomingRequest, source_ip: str, service: str
    ) -> tuple[VerifiedCaller, Credential]:
        verified = parse_request_unverified(request, now=datetime.now(UTC), service=service)
        account_id = emulated_account(verified.access_key_id, self.default_account_id)
        administrator = await self._administrator(account_id)
        credential = Credential(
            access_key_id=verified.access_key_id,
            secret_access_key="",  # never used: nothing is verified against it
            principal_arn=administrator,
            account_id=account_id,
            active=True,
        )
        return verified, credential

    async def _administrator(self, account_id: str) -> str:
        if account_id not in self._ready_accounts:
            # The writer's commands are run from a thread (run_sync), never its own loop.
            await asyncio.to_thread(self.ensure_administrator, account_id, None, None)
            self._ready_accounts.add(account_id)
        return principal_arn(self.partition, account_id, "user", "admin")
