"""The auditor's console's sessions: sign-in with an access key, a MAC'd session cookie,
sign-out; each recorded in the audit trail.

A session is a stateless token, MAC'd under the vault's session-token secret with a label
of its own (as STS session tokens are, domain/sts.py), so every worker process of the
service accepts it without a shared table, and nobody without the root key forges one. It
names the access key it was opened with, a random session id, when it was issued and when
it was last used: it ends ``idle`` after its last use or ``lifetime`` after it was issued,
whichever comes first, and as soon as its access key is deactivated (checked on every
use, within the credential cache's few seconds). Each use re-issues it with a new "last
used" time (a sliding idle window).

Sign-in is recorded as AWS records a sign-in to its console: ``ConsoleLogin`` from
``signin.amazonaws.com`` (eventType ``AwsConsoleSignIn``), ``responseElements``
``{"ConsoleLogin": "Success"}`` or ``"Failure"``. A failure is recorded when the access key
exists (attributed to its owner, like a mis-signed API call); an unknown key names nobody.
Sign-out is KeyLedger's own ``ConsoleSignOut`` (AWS records none).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import orjson

from app.auth.credentials import Caller, Credential, IdentityDirectory
from app.ports import Clock
from app.usecases.auditing import Auditor
from domain.audit import CONSOLE_LOGIN, KEYLEDGER_SOURCE, SIGNIN_SOURCE
from domain.errors import UnrecognizedClientError
from domain.sts import Mac

TOKEN_VERSION = b"KLC1"
MAC_BYTES = 32
MAX_TOKEN_LENGTH = 1024
CONSOLE_SIGN_OUT = "ConsoleSignOut"
EXPIRED_MESSAGE = "The console session has ended; sign in again."


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in console session: who, and the token that names it."""

    caller: Caller
    token: str  # the cookie's value, re-issued with this use as its last
    session_id: str
    issued_at: datetime

    def csrf_token(self, mac: Mac) -> str:
        """The token the session's forms carry (sign-out): bound to the session id."""
        return base64.urlsafe_b64encode(mac(b"console-csrf:" + self.session_id.encode())).decode()


class ConsoleSessions:
    def __init__(
        self,
        *,
        identity: IdentityDirectory,
        auditor: Auditor | None,
        mac: Mac,
        clock: Clock,
        region: str,
        idle: timedelta,
        lifetime: timedelta,
    ) -> None:
        self.identity = identity
        self.auditor = auditor
        self.mac = mac
        self.clock = clock
        self.region = region
        self.idle = idle
        self.lifetime = lifetime

    # ==== sign-in and sign-out ==============================================================
    async def sign_in(
        self, access_key_id: str, secret_access_key: str, *, source_ip: str, user_agent: str
    ) -> ConsoleSession:
        """A new session for the access key whose secret is given, or UnrecognizedClientError
        (ThrottlingError once the source spent its failed-authentication budget)."""
        request_id = str(uuid.uuid4())
        call = (
            self.auditor.call(
                CONSOLE_LOGIN,
                event_source=SIGNIN_SOURCE,
                request_id=request_id,
                source_ip=source_ip,
                user_agent=user_agent,
            )
            if self.auditor is not None
            else None
        )
        try:
            credential = await self.identity.verify_secret(
                access_key_id, secret_access_key, source_ip=source_ip
            )
        except UnrecognizedClientError as error:
            claimed = self.identity.cached_credential(access_key_id)
            if call is not None and claimed is not None:  # a key of ours: its owner's record
                call.caller = self._caller(claimed, source_ip, user_agent, request_id)
                call.parameters = {}
                call.response_elements = {"ConsoleLogin": "Failure"}
                call.additional_event_data = {"MFAUsed": "No"}
                async with call:
                    raise
            raise error
        caller = self._caller(credential, source_ip, user_agent, request_id)
        if call is not None:
            call.caller = caller
            call.parameters = {}
            call.response_elements = {"ConsoleLogin": "Success"}
            call.additional_event_data = {"MFAUsed": "No"}
            async with call:
                pass
        now = self.clock.now()
        session_id = secrets.token_hex(16)
        return ConsoleSession(
            caller=caller,
            token=self._token(access_key_id, session_id, now, now),
            session_id=session_id,
            issued_at=now,
        )

    async def sign_out(self, session: ConsoleSession) -> None:
        """Record the sign-out (the cookie is the adapter's to clear)."""
        if self.auditor is None:
            return
        caller = replace(session.caller, request_id=str(uuid.uuid4()))
        call = self.auditor.call(
            CONSOLE_SIGN_OUT,
            event_source=KEYLEDGER_SOURCE,
            request_id=caller.request_id,
            source_ip=caller.source_ip,
            user_agent=caller.user_agent,
            caller=caller,
        )
        call.parameters = {}
        async with call:
            pass

    # ==== a session's later uses ============================================================
    async def resume(self, token: str, *, source_ip: str, user_agent: str) -> ConsoleSession:
        """The session ``token`` names, re-issued for this use; AuthenticationError when the
        token is not one this service issued, has ended, or its access key is no longer
        active."""
        access_key_id, session_id, issued, last_used = self._decode(token)
        now = self.clock.now()
        if now - last_used > self.idle or now - issued > self.lifetime or last_used > now:
            raise UnrecognizedClientError(EXPIRED_MESSAGE)
        credential = await self.identity.credential_async(access_key_id)
        if credential is None or not credential.active:
            raise UnrecognizedClientError(EXPIRED_MESSAGE)
        caller = self._caller(credential, source_ip, user_agent, str(uuid.uuid4()))
        return ConsoleSession(
            caller=caller,
            token=self._token(access_key_id, session_id, issued, now),
            session_id=session_id,
            issued_at=issued,
        )

    def csrf_token(self, session: ConsoleSession) -> str:
        return session.csrf_token(self.mac)

    def check_csrf(self, session: ConsoleSession, given: str) -> bool:
        return hmac.compare_digest(self.csrf_token(session).encode(), given.encode())

    # ==== the token =========================================================================
    def _caller(
        self, credential: Credential, source_ip: str, user_agent: str, request_id: str
    ) -> Caller:
        return Caller(
            account_id=credential.account_id,
            principal_arn=credential.principal_arn,
            access_key_id=credential.access_key_id,
            region=self.region,
            source_ip=source_ip,
            user_agent=user_agent,
            request_id=request_id,
        )

    def _token(self, access_key_id: str, session_id: str, issued: datetime, last: datetime) -> str:
        payload = TOKEN_VERSION + orjson.dumps(
            [access_key_id, session_id, issued.timestamp(), last.timestamp()]
        )
        raw = payload + self.mac(b"console:" + payload)
        return base64.urlsafe_b64encode(raw).decode()

    def _decode(self, token: str) -> tuple[str, str, datetime, datetime]:
        refused = UnrecognizedClientError(EXPIRED_MESSAGE)
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise refused
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise refused from None
        payload, tag = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        if not payload.startswith(TOKEN_VERSION) or not hmac.compare_digest(
            self.mac(b"console:" + payload), tag
        ):
            raise refused
        try:
            key_id, session_id, issued, last = orjson.loads(payload[len(TOKEN_VERSION) :])
            tz = self.clock.now().tzinfo
            return (
                str(key_id),
                str(session_id),
                datetime.fromtimestamp(float(issued), tz),
                datetime.fromtimestamp(float(last), tz),
            )
        except (ValueError, TypeError, OverflowError):
            raise refused from None
