"""``keyledger projections run`` and ``keyledger audit ...``: the auditor's commands.

They run as the local operator (every account, no credentials) against the database the
settings name, and need no root key: nothing here decrypts anything (except that
``projections run``, given the root key as the supervisor's projection process is, also
signs the ledger's checkpoints).

    keyledger projections run [--batch-size N]
    keyledger projections dead-letters [--limit N]
    keyledger audit replay [--until T] [--keep] [--wait SECONDS]
    keyledger audit verify [--catch-up] [--public-key VKEY] [--checkpoint NOTE_FILE]
    keyledger audit export --out DIR [--start T] [--end T] [--account A]
                           [--wait-checkpoint SECONDS] [--no-ledger | --ledger-only]
    keyledger audit events [--key K] [--principal ARN] [--event-name N] ... [--format F]
    keyledger audit key KEY --at T
    keyledger audit report NAME [--format json|csv] [--days N] [--key K] [--month YYYY-MM]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from app.entrypoints.cli import audit_verify, trail_digests
from app.entrypoints.cli.audit_export import (
    ExportedFile,
    Manifest,
    csv_lines,
    export_trail,
    jsonl_lines,
    write_manifest,
)
from app.entrypoints.cli.ledger_export import write_ledger_evidence
from app.infrastructure.clock import Clock
from app.infrastructure.ledger import Ledger
from app.infrastructure.postgres.database import connection_params, resolve_database_url
from app.infrastructure.read_models import AuditReads
from app.settings import Settings, load_settings
from app.usecases.auditors import AuditService
from projections import reports
from projections.audit_queries import AuditFilter
from projections.audit_trail import AuditTrailProjection
from projections.key_directory import KeyDirectoryProjection
from projections.ledger_export import LedgerExportError
from projections.merkle_log import MerkleLogProjection
from projections.replay import WAIT_SECONDS, replay


@dataclass
class AuditContext:
    settings: Settings
    database_url: str
    ledger: Ledger
    pool: ConnectionPool
    trail: AuditTrailProjection
    audit: AuditService

    def close(self) -> None:
        self.pool.close()
        self.ledger.close()


def open_context(*, migrate: bool = False) -> AuditContext:
    settings = load_settings()
    database_url = resolve_database_url(settings)
    if migrate:
        from app.bootstrap import migrate as run_migrations

        run_migrations(database_url)
    ledger = Ledger(env=connection_params(database_url) | {"CREATE_TABLE": "n"})
    pool = ConnectionPool(database_url, min_size=1, max_size=4, open=True)
    trail = AuditTrailProjection(ledger, pool, database_url)
    audit = AuditService(
        store=AuditReads(trail, pool, ledger),
        clock=Clock(),
        operator_account=settings.default_account_id,
        online=None,
        wait_seconds=0,
    )
    return AuditContext(settings, database_url, ledger, pool, trail, audit)


def _time(value: str | None) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _warn_if_behind(context: AuditContext) -> None:
    head = context.ledger.recorder.max_notification_id() or 0
    position = context.trail.position()
    if position < head:
        print(
            f"warning: the audit views are {head - position} event(s) behind the ledger; "
            "start the service or `keyledger projections run` to bring them up to date",
            file=sys.stderr,
        )


# --- projections run ---------------------------------------------------------------------
def cmd_projections_run(args: argparse.Namespace) -> int:
    """Run the projections in the foreground until SIGINT or SIGTERM."""
    context = open_context(migrate=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    runners: list[Any] = [
        AuditTrailProjection(
            context.ledger, context.pool, context.database_url, batch_size=args.batch_size
        )
    ]
    # The Merkle log runs where the audit trail does (docs/verifiable-ledger.md).
    if context.settings.ledger_log:
        runners.append(
            MerkleLogProjection(
                context.ledger, context.pool, context.database_url, batch_size=args.batch_size
            )
        )
    if not args.audit_only:
        runners.append(KeyDirectoryProjection(context.ledger, context.pool, context.database_url))
    # The checkpoint signer and the recent-range watch run here too when the root key can
    # be opened here (docs/verifiable-ledger.md): off the workers' event loops.
    from app.bootstrap import projection_guards

    runners += [
        guard
        for guard in projection_guards(context.settings, context.database_url, context.pool)
        if guard is not None
    ]
    for runner in runners:
        runner.start()
    print("projections running: " + ", ".join(type(r).__name__ for r in runners), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for runner in runners:
            runner.stop()
        context.close()
    return 0


def cmd_projections_dead_letters(args: argparse.Namespace) -> int:
    """List the events each projection set aside; exit 1 if there are any."""
    context = open_context()
    try:
        views = [
            context.trail,
            KeyDirectoryProjection(context.ledger, context.pool, context.database_url),
        ]
        found = {view.name: view.dead_letters(args.limit) for view in views}
    finally:
        context.close()
    for name, letters in found.items():
        print(f"{name}: {letters.count} event(s) set aside")
        for letter in letters.newest:
            print(
                f"  event {letter.notification_id}: {letter.topic} of {letter.originator_id}"
                f" version {letter.originator_version}, {letter.failed_at.isoformat()},"
                f" {letter.error_type}: {letter.error_message}"
            )
    return 1 if any(letters.count for letters in found.values()) else 0


# --- audit replay / export ----------------------------------------------------------------
def cmd_audit_replay(args: argparse.Namespace) -> int:
    context = open_context()
    try:
        result = replay(
            context.ledger,
            context.database_url,
            until=_time(args.until),
            keep=args.keep,
            batch_size=args.batch_size,
            wait=args.wait,
        )
    finally:
        context.close()
    print(result.report())
    if args.keep:
        print(f"scratch schema kept: {result.schema}")
    return 0 if result.identical else 1


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Recompute every leaf of the Merkle log from the stored events and compare, check the
    checkpoints' signatures with the pinned keys and the kept checkpoints; exit 0 when all
    holds, 1 naming the first failure (docs/verifiable-ledger.md)."""
    context = open_context(migrate=args.catch_up)
    try:
        if args.catch_up:
            MerkleLogProjection(context.ledger, context.pool, context.database_url).catch_up_to()
        head = context.ledger.recorder.max_notification_id() or 0
        status, line = audit_verify.run(args, context.database_url)
        with psycopg.connect(context.database_url) as conn:
            row = conn.execute("SELECT notification_id FROM ledger_tree WHERE id").fetchone()
    finally:
        context.close()
    audit_verify.print_outcome(status, line)
    covered = int(row[0]) if row else 0
    if status == 0 and covered < head:
        print(
            f"warning: events after {covered} (up to {head}) are not under the tree yet;"
            " `--catch-up` appends them first",
            file=sys.stderr,
        )
    return status


def cmd_audit_export(args: argparse.Namespace) -> int:
    """Write the trail of a period, its digests and the ledger evidence (exit 2 if the
    ledger cannot back it yet: docs/ledger-export.md)."""
    context = open_context()
    out = Path(args.out)
    try:
        signer = trail_digests.load_digest_signer(context.settings, context.database_url)
        query = AuditFilter(
            recipient_account=args.account, start=_time(args.start), end=_time(args.end)
        )
        manifest = Manifest(
            start=query.start,
            end=query.end,
            account=args.account,
            generated_at=datetime.now(UTC),
            ledger_position=context.trail.position(),
        )

        def ledger(counted: Manifest | None) -> list[ExportedFile]:
            return write_ledger_evidence(
                context.database_url,
                out,
                counted,
                whole=args.ledger_only,
                wait_seconds=args.wait_checkpoint,
            )

        if args.ledger_only:
            out.mkdir(parents=True, exist_ok=True)
            manifest.files.extend(ledger(None))
            write_manifest(out, manifest, signer)
        else:
            _warn_if_behind(context)
            rows = asyncio.run(context.audit.export(None, query))
            export_trail(rows, out, manifest, signer, None if args.no_ledger else ledger)
    except LedgerExportError as error:
        print(f"error: no ledger evidence: {error}; {out} is incomplete", file=sys.stderr)
        return 2
    finally:
        context.close()
    print(f"exported {manifest.records} record(s) in {len(manifest.files)} file(s) to {out}")
    if signer is None:
        print(
            "no digest files and an unsigned manifest: no ledger signing key is available"
            " to this command",
            file=sys.stderr,
        )
    print(f"manifest: {out / 'manifest.json'}")
    return 0


# --- audit events / key / report ---------------------------------------------------------
def cmd_audit_events(args: argparse.Namespace) -> int:
    context = open_context()
    try:
        _warn_if_behind(context)
        query = AuditFilter(
            recipient_account=args.account,
            principal_arn=args.principal,
            resource=args.key,
            event_name=args.event_name,
            error_code=args.error_code,
            start=_time(args.start),
            end=_time(args.end),
            source_ip=args.source_ip,
            encryption_context_key=args.encryption_context_key,
        )
        if args.format == "json":
            page = asyncio.run(context.audit.lookup(None, query, args.limit, None))
            for row in page.rows:
                print(json.dumps(json.loads(row.record)))
        else:
            rows = asyncio.run(context.audit.export(None, query))
            lines = jsonl_lines(rows) if args.format == "jsonl" else csv_lines(rows)
            for line in lines:
                sys.stdout.write(line)
    finally:
        context.close()
    return 0


def cmd_audit_key(args: argparse.Namespace) -> int:
    context = open_context()
    try:
        at = _time(args.at) or datetime.now(UTC)
        found = asyncio.run(context.audit.key_as_of(None, args.key, at))
    finally:
        context.close()
    print(json.dumps(vars(found), indent=2, default=_plain))
    return 0


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "__dict__"):
        return vars(value)
    return str(value)


def cmd_audit_report(args: argparse.Namespace) -> int:
    periods: dict[str, int] = {}
    for item in args.cryptoperiod or []:
        kind, _, days = item.partition("=")
        periods[kind] = int(days)
    context = open_context()
    try:
        _warn_if_behind(context)
        found = asyncio.run(
            context.audit.report(
                None,
                args.name,
                days=args.days,
                key=args.key,
                month=args.month,
                cryptoperiods=periods or None,
                account=args.account,
            )
        )
    finally:
        context.close()
    sys.stdout.write(found.as_csv() if args.format == "csv" else found.as_json() + "\n")
    return 0


# --- parser ------------------------------------------------------------------------------------
def add_commands(commands: Any) -> None:
    """Add ``projections`` and ``audit`` to the ``keyledger`` command's subparsers."""
    projections = commands.add_parser(
        "projections", help="run the read-model projections"
    ).add_subparsers(dest="action", required=True)
    run = projections.add_parser(
        "run", help="run the projections in the foreground (exactly once; resumable)"
    )
    run.add_argument("--batch-size", type=int, help="events per batch (default 2000)")
    run.add_argument(
        "--audit-only",
        action="store_true",
        help="only the audit trail and the Merkle log (not the key directory)",
    )
    run.set_defaults(handler=cmd_projections_run)
    dead = projections.add_parser(
        "dead-letters", help="the events each projection set aside (exit 1 if any)"
    )
    dead.add_argument("--limit", type=int, default=20, help="newest events listed per view")
    dead.set_defaults(handler=cmd_projections_dead_letters)

    audit = commands.add_parser("audit", help="the auditor's tools").add_subparsers(
        dest="action", required=True
    )
    replay_parser = audit.add_parser(
        "replay", help="rebuild every read model from the ledger and compare with the live one"
    )
    replay_parser.add_argument("--until", help="replay only events until this time (ISO 8601)")
    replay_parser.add_argument("--keep", action="store_true", help="keep the scratch schema")
    replay_parser.add_argument("--batch-size", type=int, default=2000)
    replay_parser.add_argument(
        "--wait",
        type=float,
        default=WAIT_SECONDS,
        help="seconds the live views get to reach the ledger's head before the comparison"
        " (a view still short of it is reported as a difference)",
    )
    replay_parser.set_defaults(handler=cmd_audit_replay)

    verify = audit.add_parser(
        "verify",
        help="recompute the ledger's Merkle log from the stored events and check its signed"
        " checkpoints (exit 1 naming the first event or checkpoint that fails: altered,"
        " reordered, missing, inserted, truncated, unsigned, forked, rolled-back)",
    )
    audit_verify.add_arguments(verify)
    verify.set_defaults(handler=cmd_audit_verify)

    export = audit.add_parser("export", help="write the audit trail of a period to files")
    export.add_argument("--out", required=True, help="directory to write")
    export.add_argument("--start", help="from (ISO 8601, inclusive)")
    export.add_argument("--end", help="until (ISO 8601, inclusive)")
    export.add_argument("--account", help="one account's records (default: every account)")
    export.add_argument(
        "--wait-checkpoint",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for a signed checkpoint covering the records (default:"
        " fail at once)",
    )
    scope = export.add_mutually_exclusive_group()
    scope.add_argument(
        "--no-ledger", action="store_true", help="no ledger/ evidence (the trail files only)"
    )
    scope.add_argument(
        "--ledger-only",
        action="store_true",
        help="no records: every leaf and every checkpoint up to the newest (whole-ledger mode)",
    )
    export.set_defaults(handler=cmd_audit_export)

    events = audit.add_parser("events", help="query the audit trail, newest first")
    events.add_argument("--key", help="key id or ARN")
    events.add_argument("--principal", help="principal ARN")
    events.add_argument("--event-name")
    events.add_argument("--error-code", help="e.g. AccessDenied; * for any failure")
    events.add_argument("--start")
    events.add_argument("--end")
    events.add_argument("--source-ip")
    events.add_argument("--encryption-context-key")
    events.add_argument("--account")
    events.add_argument("--limit", type=int, default=50)
    events.add_argument("--format", choices=("json", "jsonl", "csv"), default="json")
    events.set_defaults(handler=cmd_audit_events)

    key = audit.add_parser("key", help="a key's state, policy and grants as of a time")
    key.add_argument("key", help="key id or key ARN")
    key.add_argument("--at", help="ISO 8601 (default: now)")
    key.set_defaults(handler=cmd_audit_key)

    report = audit.add_parser("report", help="a compliance report")
    report.add_argument("name", choices=reports.REPORTS)
    report.add_argument("--format", choices=("json", "csv"), default="json")
    report.add_argument("--days", type=int, default=90, help="unused-keys: days unused")
    report.add_argument("--key", help="who-can-decrypt: key id or ARN")
    report.add_argument("--month", help="cost: YYYY-MM (default: this month)")
    report.add_argument(
        "--cryptoperiod",
        action="append",
        metavar="KEY_TYPE=DAYS",
        help="cryptoperiod: override a NIST default (symmetric-encryption=365, ...)",
    )
    report.add_argument("--account", help="one account (default: every account)")
    report.set_defaults(handler=cmd_audit_report)
