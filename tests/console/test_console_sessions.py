"""Console sessions (app/usecases/console.py) against the service's real credential
store, on a clock of their own (the service's clock is shared by the session's tests)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from app.usecases.console import ConsoleSessions
from domain.errors import ThrottlingError, UnrecognizedClientError
from tests.access.conftest import Identities, Principal
from tests.conftest import Service


class ManualClock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment


def _sessions(service: Service, clock: ManualClock) -> ConsoleSessions:
    runtime = service.runtime
    return ConsoleSessions(
        identity=runtime.identity,
        auditor=None,
        mac=runtime.vault.session_token_mac,
        clock=clock,
        region="us-east-1",
        idle=timedelta(minutes=15),
        lifetime=timedelta(hours=8),
    )


@pytest.fixture
def principal(identities: Identities) -> Principal:
    return identities.principal(identities.account(), policies={})


def test_a_session_lasts_while_it_is_used_within_its_idle_bound(
    service: Service, principal: Principal
) -> None:
    clock = ManualClock()
    sessions = _sessions(service, clock)
    session = asyncio.run(
        sessions.sign_in(
            principal.access_key_id, principal.secret, source_ip="10.0.0.1", user_agent=""
        )
    )
    for _ in range(4):  # an hour of use, a page every 14 minutes
        clock.moment += timedelta(minutes=14)
        session = asyncio.run(sessions.resume(session.token, source_ip="10.0.0.1", user_agent=""))

    assert session.caller.principal_arn == principal.arn


def test_a_session_ends_after_its_idle_bound(service: Service, principal: Principal) -> None:
    clock = ManualClock()
    sessions = _sessions(service, clock)
    session = asyncio.run(
        sessions.sign_in(principal.access_key_id, principal.secret, source_ip="", user_agent="")
    )
    clock.moment += timedelta(minutes=16)

    with pytest.raises(UnrecognizedClientError):
        asyncio.run(sessions.resume(session.token, source_ip="", user_agent=""))


def test_a_session_ends_after_its_lifetime_however_it_is_used(
    service: Service, principal: Principal
) -> None:
    clock = ManualClock()
    sessions = _sessions(service, clock)
    session = asyncio.run(
        sessions.sign_in(principal.access_key_id, principal.secret, source_ip="", user_agent="")
    )
    with pytest.raises(UnrecognizedClientError):
        for _ in range(8 * 6 + 1):  # every 10 minutes, for more than 8 hours
            clock.moment += timedelta(minutes=10)
            session = asyncio.run(sessions.resume(session.token, source_ip="", user_agent=""))
    assert clock.moment - datetime(2026, 3, 1, 9, 0, tzinfo=UTC) > timedelta(hours=8)


def test_a_session_ends_when_its_access_key_is_deactivated(
    service: Service, principal: Principal
) -> None:
    sessions = _sessions(service, ManualClock())
    session = asyncio.run(
        sessions.sign_in(principal.access_key_id, principal.secret, source_ip="", user_agent="")
    )
    service.runtime.identity.deactivate_access_key(principal.access_key_id)
    service.runtime.identity.forget_credentials()  # as the cache's few seconds would

    with pytest.raises(UnrecognizedClientError):
        asyncio.run(sessions.resume(session.token, source_ip="", user_agent=""))


def test_a_token_issued_for_another_purpose_is_no_session(
    service: Service, principal: Principal
) -> None:
    sessions = _sessions(service, ManualClock())
    session = asyncio.run(
        sessions.sign_in(principal.access_key_id, principal.secret, source_ip="", user_agent="")
    )

    for token in ("", "x" * 5000, "\x00", session.token[:-2], session.token.swapcase()):
        with pytest.raises(UnrecognizedClientError):
            asyncio.run(sessions.resume(token, source_ip="", user_agent=""))


def test_failed_sign_ins_spend_the_sources_budget_then_are_throttled(
    service: Service, principal: Principal
) -> None:
    sessions = _sessions(service, ManualClock())
    limiter = service.runtime.identity.limiter
    source = "198.51.100.77"
    refused = 0
    with pytest.raises(ThrottlingError):
        for _ in range(limiter.burst + 1):
            try:
                asyncio.run(
                    sessions.sign_in(
                        f"AKLGNOSUCHKEY{refused:07d}", "wrong", source_ip=source, user_agent=""
                    )
                )
            except UnrecognizedClientError:
                refused += 1
    assert refused == limiter.burst
    # another source is not affected
    assert asyncio.run(
        sessions.sign_in(principal.access_key_id, principal.secret, source_ip="", user_agent="")
    )
