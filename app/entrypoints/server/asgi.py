"""The ASGI application: the AWS protocol at ``POST /``, the REST API everywhere else."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from app.bootstrap import Runtime
from app.entrypoints.aws_json.handler import TARGET_PREFIX as KMS_TARGET_PREFIX
from app.entrypoints.aws_json.handler import AwsJsonHandler
from app.entrypoints.cloudtrail_json import TARGET_PREFIX as CLOUDTRAIL_TARGET_PREFIX
from app.entrypoints.cloudtrail_json import CloudTrailHandler, is_cloudtrail_target
from app.entrypoints.console.app import create_console_app
from app.entrypoints.console.app import serves as console_serves
from app.entrypoints.rest.app import create_rest_app, recorded_operation
from app.entrypoints.rest.sys import PROCESS_HEADER, UNSIGNED_PATHS
from app.entrypoints.server.emulator import EmulatorEndpoints
from app.entrypoints.server.request_limits import (
    BODY_LIMITS,
    Protocol,
    answer_error,
    read_body,
    replaying,
)
from app.entrypoints.server.request_limits import refuse as refuse_too_large
from app.entrypoints.sts.handler import StsHandler, is_query_request
from app.entrypoints.xks.handler import XksConfig, XksHandler
from app.infrastructure.postgres.database import bounded_waits
from app.infrastructure.seal_control import SupervisedSeal
from app.settings import load_settings
from app.support.metrics import exposition
from app.support.request_ids import new_request_id
from app.usecases.sts import SecurityTokenService
from domain.audit import CLOUDTRAIL_SOURCE, KMS_SOURCE, STS_SOURCE
from domain.errors import RequestTooLargeError, SealedError

log = logging.getLogger("keyledger")


class KeyLedgerApp:
    """Routes AWS protocol calls to the lean handler before FastAPI sees them.

    With lifespan events on, the ledger writer runs on the server's own event loop (see
    app.infrastructure.writer for why), and ``on_started`` runs in a thread once it is up.
    """

    def __init__(self, runtime: Runtime, on_started: Callable[[], None] | None = None) -> None:
        self.runtime = runtime
        self.on_started = on_started
        regions = runtime.settings.regions
        self.aws = AwsJsonHandler(runtime.service, runtime.identity, runtime.auditor, regions)
        self.cloudtrail = CloudTrailHandler(
            runtime.audit_service, runtime.identity, runtime.auditor, regions
        )
        self.sts = StsHandler(
            SecurityTokenService(runtime.service.access), runtime.identity, runtime.auditor, regions
        )
        self.rest = create_rest_app(runtime)
        self.console = create_console_app(runtime)  # the auditor's console, /console
        self.xks = _xks_handler(runtime)
        # Emulator mode's endpoints exist only in emulator mode: elsewhere their paths are
        # the REST app's (404).
        self.emulator = EmulatorEndpoints(runtime) if runtime.settings.emulator else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            await self.rest(scope, receive, send)
            return
        if self.xks is not None and self.xks.serves(scope["path"]):
            await self.xks(scope, receive, send)  # its own limits, errors and sealed answer
            return
        if self.emulator is not None and self.emulator.serves(scope["path"]):
            await self.emulator(scope, receive, send)
            return
        protocol = self._protocol(scope)
        if protocol is None:
            await self._metrics(send)
            return
        if self.runtime.sealed and _needs_root_key(protocol, scope):
            await self._refuse_sealed(protocol, scope, receive, send)
            return
        # Every body is read here, within its protocol's limit, before any handler runs.
        try:
            body = await read_body(scope, receive, BODY_LIMITS[protocol])
        except RequestTooLargeError as error:
            await self._refuse(protocol, scope, send, error)
            return
        if body is None:  # the client left before sending all of it
            return
        if protocol is Protocol.KMS:
            # Each of the call's waits for the database outside the writer (whose batches
            # have their own deadline) ends in time: a database that stopped answering
            # gets the call a 503 within the bound, never a hang (docs/reliability.md).
            with bounded_waits(self.runtime.settings.request_database_wait_seconds):
                await self.aws.answer(scope, body, send)
        elif protocol is Protocol.CLOUDTRAIL:
            assert self.cloudtrail is not None  # _protocol says CloudTrail only when served
            await self.cloudtrail.answer(scope, body, send)
        elif protocol is Protocol.QUERY:
            await self.sts.answer(scope, body, send)
        elif console_serves(scope["path"]):
            await self.console(scope, replaying(body, receive), send)
        else:
            await self.rest(scope, replaying(body, receive), send)

    async def _refuse_sealed(
        self, protocol: Protocol, scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        """503 while the root key is sealed, before anything reads the request: no caller
        can be authenticated (their secrets are wrapped under the root key), so nothing is
        recorded either. The body is read (within its limit) so the connection stays
        usable; one over the limit is not, and the connection closes after the answer."""
        try:
            body = await read_body(scope, receive, BODY_LIMITS[protocol])
        except RequestTooLargeError:
            body = None
            close = True
        else:
            if body is None:  # the client left
                return
            close = False
        worker = ((PROCESS_HEADER.encode(), str(os.getpid()).encode()),)
        await answer_error(
            send, protocol, SealedError(), new_request_id(), close=close, headers=worker
        )

    def _protocol(self, scope: dict[str, Any]) -> Protocol | None:
        """The protocol of an HTTP request (None: the metrics page). At ``POST /`` the
        X-Amz-Target header decides between KMS and CloudTrail."""
        if scope["method"] == "POST" and scope["path"] == "/":
            return _root_protocol(scope)
        if scope["path"] == "/metrics":
            return None
        return Protocol.REST

    async def _refuse(
        self, protocol: Protocol, scope: dict[str, Any], send: Any, error: RequestTooLargeError
    ) -> None:
        """Answer an oversized request, after a bounded record of it (app.usecases.auditing) when it
        names one of our access keys."""
        request_id = new_request_id()
        auditor = self.runtime.auditor
        if auditor is not None:
            source, name = self._operation(protocol, scope)
            client = scope.get("client") or ("", 0)
            await auditor.refused(
                name,
                event_source=source,
                request_id=request_id,
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
                query_string=scope.get("query_string", b"").decode("latin-1"),
                source_ip=client[0],
                error=error,
            )
        await refuse_too_large(send, protocol, error, request_id)

    def _operation(self, protocol: Protocol, scope: dict[str, Any]) -> tuple[str, str]:
        """(event source, operation) a request claims, from its target or its route."""
        if protocol is Protocol.REST:
            return recorded_operation(self.rest, scope)
        target = _target(scope)
        if protocol is Protocol.CLOUDTRAIL:
            return CLOUDTRAIL_SOURCE, target.removeprefix(CLOUDTRAIL_TARGET_PREFIX)
        if protocol is Protocol.QUERY:
            return STS_SOURCE, ""  # the action is in the body, which was not read
        return KMS_SOURCE, target.removeprefix(KMS_TARGET_PREFIX)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if not self.runtime.writer.started:
                        await self.runtime.writer.start_async()
                    # Before listening: a restarted worker of an unsealed service opens now.
                    await asyncio.to_thread(self.runtime.start_unsealer)
                    if self.on_started is not None:
                        await asyncio.to_thread(self.on_started)
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.runtime.writer.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _metrics(self, send: Any) -> None:
        """Prometheus text format: every worker's counts (app.support.metrics) and what
        this process reads now (lags, the ledger's verification, the sealed state)."""
        # All bounded, and read at once: the page answers within the longest bound.
        gaps, lag, checkpoint_lag = await asyncio.gather(
            self.runtime.projection_gaps(), self.runtime.audit_lag(), self.runtime.checkpoint_lag()
        )
        read_now: list[Metric] = [
            _gauge("keyledger_process_id", "the worker process that answered", os.getpid()),
            _gauge(
                "keyledger_database_available",
                "0 while the writer waits for the database",
                int(self.runtime.writer.available),
            ),
            _gauge("keyledger_sealed", "1 while the root key is sealed", int(self.runtime.sealed)),
        ]
        if gaps is not None:
            set_aside = GaugeMetricFamily(
                "keyledger_projection_events_set_aside",
                "events a view could not apply and set aside (projection_dead_letters)",
                labels=["projection"],
            )
            for name, gap in gaps.items():
                set_aside.add_metric([name], gap.count)
            read_now.append(set_aside)
        if self.runtime.audit is not None:  # (its lag is NaN when the store did not answer)
            read_now.append(
                _gauge("keyledger_audit_lag_seconds", "newest event time minus newest audited", lag)
            )
        read_now += _ledger_metrics(self.runtime, checkpoint_lag)
        body = await asyncio.to_thread(exposition, read_now)  # reads every worker's files
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _ledger_metrics(runtime: Runtime, checkpoint_lag: float) -> list[Metric]:
    """The verifiable ledger's gauges (docs/verifiable-ledger.md); none with the log off."""
    status = runtime.ledger_status()
    if status is None:
        return []
    signed = runtime.checkpointer.signed if runtime.checkpointer is not None else 0
    failed = int(bool(status.failure or status.signer_problem))
    return [
        _gauge(
            "keyledger_ledger_verification_failed",
            "1 once this process found the ledger tampered with (see /readyz and the log)",
            failed,
        ),
        _gauge(
            "keyledger_ledger_checkpoint_size",
            "the newest checkpoint this process verified",
            status.checkpoint_size,
        ),
        _gauge(
            "keyledger_ledger_verified_size",
            "leaves this process recomputed from the events",
            status.verified_size,
        ),
        CounterMetricFamily(
            "keyledger_ledger_sampled",
            "older leaves this process checked by sampling",
            value=status.sampled,
        ),
        CounterMetricFamily(
            "keyledger_ledger_checkpoints_signed",
            "checkpoints this process signed",
            value=signed,
        ),
        _gauge(
            "keyledger_ledger_checkpoint_lag_seconds",
            "age of the oldest event not yet under a signed checkpoint",
            checkpoint_lag,
        ),
    ]


def _xks_handler(runtime: Runtime) -> XksHandler | None:
    """The XKS Proxy API, when its credentials are set."""
    settings = runtime.settings
    if not settings.xks_credentials:
        return None
    assert settings.xks_principal_arn is not None  # the settings insist on it
    config = XksConfig(
        uri_paths=settings.xks_uri_paths,
        secrets=settings.xks_secrets(),
        principal_arn=settings.xks_principal_arn,
        regions=frozenset(settings.regions),
        clock=runtime.clock.now,
        sealed=lambda: runtime.sealed,
        available=lambda: bool(runtime.writer.available),
        database_wait_seconds=settings.request_database_wait_seconds,
    )
    return XksHandler(runtime.service.external, runtime.auditor, config)


def _needs_root_key(protocol: Protocol, scope: dict[str, Any]) -> bool:
    """Every KMS and CloudTrail call and every /v1 route but the unseal's and the seal
    status's; /healthz, /readyz and the API's documentation do not."""
    if protocol is not Protocol.REST:
        return True
    path: str = scope["path"]
    if console_serves(path):  # its sign-in reads secrets wrapped under the root key
        return True
    return path.startswith("/v1/") and path.rstrip("/") not in UNSIGNED_PATHS


def _target(scope: dict[str, Any]) -> str:
    for name, value in scope["headers"]:
        if name.lower() == b"x-amz-target":
            return str(value.decode("latin-1"))
    return ""


def _root_protocol(scope: dict[str, Any]) -> Protocol:
    """The protocol of a ``POST /``, in one pass over the headers: X-Amz-Target names KMS
    or CloudTrail; without one, a form-encoded body is the query protocol (STS)."""
    target = content_type = ""
    for name, value in scope["headers"]:
        lowered = name.lower()
        if lowered == b"x-amz-target":
            target = value.decode("latin-1")
            break
        if lowered == b"content-type":
            content_type = value.decode("latin-1")
    if target:
        return Protocol.CLOUDTRAIL if is_cloudtrail_target(target) else Protocol.KMS
    return Protocol.QUERY if is_query_request(content_type) else Protocol.KMS


class WorkerApp:
    """One worker process of ``keyledger run --workers N``: builds its runtime at start-up."""

    def __init__(self) -> None:
        self.app: KeyLedgerApp | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan" and self.app is None:
            # The supervisor's unseal authority, when a Shamir-sealed key is involved.
            runtime = Runtime.build(
                load_settings(),
                run_migrations=False,
                seal_control=SupervisedSeal.from_environment(),
            )
            runtime.start(writer_on_own_loop=False)
            if runtime.custody is not None:  # bootstrapped on unseal (prepare_database could not)
                runtime.when_unsealed(_bootstrap_after_unseal(runtime))
            self.app = KeyLedgerApp(runtime)
            try:
                await self.app(scope, receive, send)
            finally:
                await asyncio.to_thread(runtime.stop)
            return
        assert self.app is not None
        await self.app(scope, receive, send)


def _bootstrap_after_unseal(runtime: Runtime) -> Callable[[], None]:
    """A worker's bootstrap of the administrator, once unsealed (idempotent: every worker
    runs it; the credentials are the configured bootstrap pair, or made with the CLI)."""

    def bootstrap() -> None:
        try:
            admin_arn, _pair = runtime.bootstrap()
        except Exception as error:  # another worker's bootstrap won the race: it is done
            # Every worker unseals at once: this one may have read the pair as missing
            # just before the winner made it; read it afresh on its first use.
            runtime.identity.forget_credentials()
            log.info("administrator not bootstrapped by this worker: %s", error)
            return
        log.info("administrator %s ready", admin_arn)

    return bootstrap


def create_app() -> WorkerApp:
    return WorkerApp()
