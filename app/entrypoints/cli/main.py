"""The ``keyledger`` command: run the service, migrate, manage identities, audit."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import stat
import sys
from typing import TYPE_CHECKING, Any

from app.settings import Settings, load_settings
from app.support.logs import configure_logging

if TYPE_CHECKING:
    from app.entrypoints.server.workers import PortHold

log = logging.getLogger("keyledger")


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("host", "port", "workers"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "emulator", False):
        overrides["emulator"] = True
    return load_settings(**overrides)


def _configure_logging(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)


# --- run -------------------------------------------------------------------------------
EMULATOR_BANNER = "\n".join(
    [
        "!" * 78,
        "!! KEYLEDGER EMULATOR MODE: NOT FOR PRODUCTION",
        "!! Any access key id is accepted and signatures are NOT verified; anyone who can",
        "!! reach this port may POST /_keyledger/reset and erase every key. Tests only.",
        "!" * 78,
    ]
)


def cmd_run(args: argparse.Namespace) -> int:
    import uvicorn

    from app.bootstrap import Runtime
    from app.entrypoints.server.asgi import KeyLedgerApp
    from app.entrypoints.server.http_protocol import CoalescingHttpToolsProtocol

    settings = _settings(args)
    _configure_logging(settings)
    if settings.workers > 1:
        # Become the small supervisor (app/entrypoints/server/supervisor.py): this process has the
        # whole application imported, which the supervisor would keep for nothing.
        for name in ("host", "port", "workers"):
            os.environ[f"KEYLEDGER_{name.upper()}"] = str(getattr(settings, name))
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", "app.entrypoints.server.supervisor"])
    port = _hold_port(settings)
    if port is None:
        return 1
    if settings.emulator:
        print(EMULATOR_BANNER, file=sys.stderr, flush=True)
    runtime = Runtime.build(settings)
    runtime.start(writer_on_own_loop=False)

    def on_started() -> None:
        # Sealed (the shamir provider): the administrator needs the root key: after unseal.
        runtime.when_unsealed(lambda: _print_credentials(settings, runtime.bootstrap(), runtime))
        status = runtime.seal_status()
        if status is not None and status.sealed:
            print(
                f"KeyLedger is SEALED: give {status.threshold} of its {status.shares} unseal key"
                " shares (keyledger operator unseal) before it serves anything",
                flush=True,
            )

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:  # listening now: say so (tools wait for this line)
                print(f"KeyLedger listening on http://{settings.host}:{settings.port}", flush=True)

    config = uvicorn.Config(
        KeyLedgerApp(runtime, on_started=on_started),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's lines go through ours (app.support.logs)
        lifespan="on",
        access_log=False,
        # Per-request work that buys nothing here: no proxy in front by default, and
        # AWS clients ignore the Server and Date headers.
        proxy_headers=False,
        server_header=False,
        date_header=False,
        http=CoalescingHttpToolsProtocol,
    )
    # Uvicorn stops on SIGTERM, then raises it again: by default that kills this process
    # before the runtime stops and before atexit stops the embedded PostgreSQL.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        Server(config).run(sockets=[port.socket])
    finally:
        runtime.stop()
        port.close()
    return 0


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _hold_port(settings: Settings) -> PortHold | None:
    """The port to serve on, taken before anything starts; None (said why) if taken."""
    from app.entrypoints.server.workers import PortInUseError, hold_port

    try:
        return hold_port(settings.host, settings.port)
    except PortInUseError as error:
        print(f"keyledger run: {error.strerror}", file=sys.stderr)
    except OSError as error:
        print(
            f"keyledger run: cannot listen on {settings.host}:{settings.port}: {error}",
            file=sys.stderr,
        )
    return None


def prepare_database(settings: Settings) -> None:
    """Migrate, then bootstrap the administrator and print its credentials (a child of
    ``keyledger run --workers N``'s supervisor)."""
    from app.bootstrap import Runtime, migrate
    from app.infrastructure.postgres.database import resolve_database_url

    _configure_logging(settings)
    migrate(resolve_database_url(settings))
    runtime = Runtime.build(settings, run_migrations=False)
    if runtime.custody is not None:  # sealed here: the first worker unsealed bootstraps
        runtime.stop()
        return
    runtime.writer.start()
    try:
        _print_credentials(settings, runtime.bootstrap(), runtime)
    finally:
        runtime.stop()


def _print_credentials(settings: Settings, admin: Any, runtime: Any) -> None:
    """Give the developer working credentials: the bootstrap pair, or a generated one."""
    admin_arn, pair = admin
    region = settings.default_region
    if pair is None:
        credentials_file = settings.data_dir / "credentials"
        if credentials_file.exists():
            print(f"Administrator {admin_arn}: credentials in {credentials_file}", flush=True)
            return
        pair = runtime.identity.create_access_key(admin_arn)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        mode = stat.S_IRUSR | stat.S_IWUSR
        fd = os.open(credentials_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(
                f"[keyledger]\naws_access_key_id = {pair[0]}\n"
                f"aws_secret_access_key = {pair[1]}\nregion = {region}\n"
            )
        print(
            f"\nGenerated an administrator access key for {admin_arn}\n"
            f"  (also saved to {credentials_file}, mode 0600):\n\n"
            f"  export AWS_ACCESS_KEY_ID={pair[0]}\n"
            f"  export AWS_SECRET_ACCESS_KEY={pair[1]}\n"
            f"  export AWS_DEFAULT_REGION={region}\n"
            f"  export AWS_ENDPOINT_URL_KMS=http://{settings.host}:{settings.port}\n",
            flush=True,
        )
    else:
        print(f"Administrator {admin_arn} uses the bootstrap access key {pair[0]}", flush=True)


# --- migrate ---------------------------------------------------------------------------
def cmd_migrate(args: argparse.Namespace) -> int:
    from app.bootstrap import migrate
    from app.infrastructure.postgres.database import resolve_database_url

    settings = _settings(args)
    _configure_logging(settings)
    applied = migrate(resolve_database_url(settings))
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    return 0


# --- identities --------------------------------------------------------------------------
def _identity_runtime(args: argparse.Namespace) -> Any:
    from app.bootstrap import Runtime

    runtime = Runtime.build(_settings(args))
    runtime.writer.start()
    return runtime


def cmd_accounts_create(args: argparse.Namespace) -> int:
    runtime = _identity_runtime(args)
    try:
        print(runtime.identity.create_account(args.account_id, args.name or ""))
    finally:
        runtime.stop()
    return 0


def _policy_text(value: str) -> str:
    """A policy document given inline, or as ``@path`` to read it from a file."""
    if value.startswith("@"):
        with open(value[1:], encoding="utf-8") as handle:
            return handle.read()
    return value


def _named_policies(pairs: list[str] | None, administrator: bool) -> dict[str, str]:
    from app.auth.credentials import ADMINISTRATOR_POLICY_NAME
    from domain.errors import ValidationError
    from domain.policy import administrator_policy

    policies = {ADMINISTRATOR_POLICY_NAME: administrator_policy()} if administrator else {}
    for pair in pairs or []:
        name, separator, document = pair.partition("=")
        if not separator:
            raise ValidationError(f"--policy takes NAME=JSON or NAME=@FILE, not '{pair}'")
        policies[name] = _policy_text(document)
    return policies


def cmd_principals_create(args: argparse.Namespace) -> int:
    policies = _named_policies(args.policy, args.administrator)
    runtime = _identity_runtime(args)
    try:
        print(
            runtime.identity.create_principal(
                args.account,
                args.name,
                args.type,
                policies=policies or None,
                service_name=args.service,
            )
        )
    finally:
        runtime.stop()
    return 0


def cmd_principals_put_policy(args: argparse.Namespace) -> int:
    document = _policy_text(args.document)
    runtime = _identity_runtime(args)
    try:
        runtime.identity.put_principal_policy(args.principal, args.name, document)
        print(f"put policy {args.name} on {args.principal}")
    finally:
        runtime.stop()
    return 0


def cmd_principals_delete_policy(args: argparse.Namespace) -> int:
    runtime = _identity_runtime(args)
    try:
        runtime.identity.delete_principal_policy(args.principal, args.name)
        print(f"deleted policy {args.name} of {args.principal}")
    finally:
        runtime.stop()
    return 0


def cmd_principals_set_service(args: argparse.Namespace) -> int:
    service = None if args.service == "none" else args.service
    runtime = _identity_runtime(args)
    try:
        runtime.identity.designate_service(args.principal, service)
        print(f"{args.principal} is " + (f"trusted as {service}" if service else "no service"))
    finally:
        runtime.stop()
    return 0


def cmd_principals_show(args: argparse.Namespace) -> int:
    import json

    from app.usecases.identities import principal_public

    runtime = _identity_runtime(args)
    try:
        print(json.dumps(principal_public(runtime.identity.principal(args.principal)), indent=2))
    finally:
        runtime.stop()
    return 0


def _pairs(values: list[str] | None) -> dict[str, str]:
    return dict(value.split("=", 1) for value in values or [] if "=" in value)


def _trace_line(trace: Any) -> str:
    if trace.applies:
        return "applies"
    if trace.principal == "not named":
        return "does not name the principal"
    if not trace.action_matches:
        return "the action does not match"
    if not trace.resource_matches:
        return "the resource does not match"
    return f"condition not met: {trace.failed_condition}"


def cmd_authz_explain(args: argparse.Namespace) -> int:
    """Why may (or may not) a principal do this? Evaluated locally, as the operator."""
    import asyncio
    import json
    from datetime import datetime

    from app.settings import load_settings
    from app.usecases.explain import ExplainQuery

    conditions: dict[str, str | list[str]] = {}
    for name, value in _pairs(args.condition).items():
        conditions[name] = value.split(",") if "," in value else value
    query = ExplainQuery(
        principal_arn=args.principal,
        action=args.action,
        key_id=args.key,
        encryption_context=_pairs(args.encryption_context) or None,
        algorithm=args.encryption_algorithm,
        source_ip=args.source_ip,
        via_service=args.via_service,
        region=args.region or load_settings().default_region,
        grant_operations=args.grant_operations.split(",") if args.grant_operations else None,
        conditions=conditions,
        at=datetime.fromisoformat(args.at) if args.at else None,
    )
    runtime = _identity_runtime(args)
    try:
        answer = asyncio.run(runtime.service.explain.explain_access(None, query))
    finally:
        runtime.stop()
    decision = answer.decision
    print(f"{decision.outcome}: {decision.reason}")
    if answer.message:
        print(f"  AccessDeniedException: {answer.message}")
    for trace in decision.trace:
        print(f"  - {trace.statement.describe()}: {_trace_line(trace)}")
    for grant in decision.grant_trace:
        print(f"  - grant {grant.grant_id}: {'applies' if grant.applies else grant.why_not}")
    if args.json:
        print(json.dumps({"allowed": decision.allowed, "context": answer.context}, indent=2))
    return 0 if decision.allowed else 1


def cmd_access_keys_create(args: argparse.Namespace) -> int:
    runtime = _identity_runtime(args)
    try:
        access_key_id, secret = runtime.identity.create_access_key(args.principal)
        print(f"AWS_ACCESS_KEY_ID={access_key_id}\nAWS_SECRET_ACCESS_KEY={secret}")
    finally:
        runtime.stop()
    return 0


def cmd_access_keys_deactivate(args: argparse.Namespace) -> int:
    runtime = _identity_runtime(args)
    try:
        runtime.identity.deactivate_access_key(args.access_key_id)
        print(f"deactivated {args.access_key_id}")
    finally:
        runtime.stop()
    return 0


# --- parser ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keyledger", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="migrate, then serve the AWS KMS protocol and REST API")
    run.add_argument("--host", help="listen address (KEYLEDGER_HOST, default 127.0.0.1)")
    run.add_argument("--port", type=int, help="listen port (KEYLEDGER_PORT, default 8080)")
    run.add_argument("--workers", type=int, help="worker processes (KEYLEDGER_WORKERS)")
    run.add_argument(
        "--emulator",
        action="store_true",
        help="emulator mode for moto/LocalStack test suites (KEYLEDGER_EMULATOR); never in"
        " production: docs/emulator.md",
    )
    run.set_defaults(handler=cmd_run)

    migrate = commands.add_parser("migrate", help="create or upgrade the database schema")
    migrate.set_defaults(handler=cmd_migrate)

    accounts = commands.add_parser("accounts", help="manage accounts").add_subparsers(
        dest="action", required=True
    )
    create_account = accounts.add_parser("create", help="create an account (12-digit id)")
    create_account.add_argument("account_id")
    create_account.add_argument("--name")
    create_account.set_defaults(handler=cmd_accounts_create)

    principals = commands.add_parser("principals", help="manage users and roles").add_subparsers(
        dest="action", required=True
    )
    create_principal = principals.add_parser("create", help="create a user or role")
    create_principal.add_argument("--account", required=True)
    create_principal.add_argument("--name", required=True)
    create_principal.add_argument("--type", choices=("user", "role"), default="user")
    create_principal.add_argument(
        "--policy",
        action="append",
        metavar="NAME=JSON|@FILE",
        help="an inline identity policy (repeatable); without one the principal may do nothing",
    )
    create_principal.add_argument(
        "--administrator", action="store_true", help="attach AdministratorAccess (Action *)"
    )
    create_principal.add_argument(
        "--service", help="trust it as this service principal (e.g. ec2.amazonaws.com)"
    )
    create_principal.set_defaults(handler=cmd_principals_create)
    put_policy = principals.add_parser("put-policy", help="create or replace an inline policy")
    put_policy.add_argument("--principal", required=True, help="principal ARN")
    put_policy.add_argument("--name", required=True, help="policy name")
    put_policy.add_argument("--document", required=True, metavar="JSON|@FILE")
    put_policy.set_defaults(handler=cmd_principals_put_policy)
    delete_policy = principals.add_parser("delete-policy", help="delete an inline policy")
    delete_policy.add_argument("--principal", required=True, help="principal ARN")
    delete_policy.add_argument("--name", required=True, help="policy name")
    delete_policy.set_defaults(handler=cmd_principals_delete_policy)
    set_service = principals.add_parser(
        "set-service", help="trust a principal as a service that may act for others"
    )
    set_service.add_argument("--principal", required=True, help="principal ARN")
    set_service.add_argument(
        "--service", required=True, help="e.g. ec2.amazonaws.com, or none to stop trusting it"
    )
    set_service.set_defaults(handler=cmd_principals_set_service)
    show = principals.add_parser("show", help="a principal, its policies and service")
    show.add_argument("principal", help="principal ARN")
    show.set_defaults(handler=cmd_principals_show)

    authz = commands.add_parser("authz", help="explain access decisions").add_subparsers(
        dest="action", required=True
    )
    explain = authz.add_parser(
        "explain", help="would a principal be allowed an action on a key, and why"
    )
    explain.add_argument("--principal", required=True, help="principal ARN")
    explain.add_argument("--action", required=True, help="e.g. kms:Decrypt")
    explain.add_argument("--key", help="key id, key ARN, alias or alias ARN")
    explain.add_argument("--encryption-context", action="append", metavar="K=V")
    explain.add_argument("--encryption-algorithm")
    explain.add_argument("--via-service", help="e.g. ec2.amazonaws.com")
    explain.add_argument("--source-ip")
    explain.add_argument("--region")
    explain.add_argument("--grant-operations", help="comma-separated, for kms:CreateGrant")
    explain.add_argument(
        "--condition", action="append", metavar="KEY=VALUE", help="further condition keys"
    )
    explain.add_argument("--at", help="answer as of this past time (ISO 8601)")
    explain.add_argument("--json", action="store_true", help="also print the request context")
    explain.set_defaults(handler=cmd_authz_explain)

    keys = commands.add_parser("access-keys", help="manage access keys").add_subparsers(
        dest="action", required=True
    )
    create_key = keys.add_parser("create", help="issue an access key pair for a principal")
    create_key.add_argument("--principal", required=True, help="principal ARN")
    create_key.set_defaults(handler=cmd_access_keys_create)
    deactivate = keys.add_parser("deactivate", help="deactivate an access key")
    deactivate.add_argument("access_key_id")
    deactivate.set_defaults(handler=cmd_access_keys_deactivate)

    from app.entrypoints.cli import audit as cli_audit

    cli_audit.add_commands(commands)  # projections run, audit replay/export/events/key/report

    from app.entrypoints.cli import ledger as cli_ledger

    cli_ledger.add_commands(commands)  # ledger checkpoints, public keys, proofs, check-proof

    from app.entrypoints.cli import operator as cli_operator

    cli_operator.add_commands(commands)  # operator rotate-root-key, init, unseal, seal

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        from pydantic import ValidationError as PydanticValidationError

        from app.infrastructure.root_keys import RootKeyError
        from domain.errors import DomainError, SealedError

        if isinstance(error, DomainError):
            print(f"error: {type(error).__name__}: {error.message}", file=sys.stderr)
            return 2
        if isinstance(error, PydanticValidationError):  # a setting: named, with its fix
            for problem in error.errors():
                print(f"error: configuration: {problem['msg']}", file=sys.stderr)
            return 2
        if isinstance(error, RootKeyError):  # a start-up error to fix, not a crash
            print(f"error: root key: {error}", file=sys.stderr)
            return 2
        if isinstance(error, SealedError):  # a command that needs the root key, run here
            print(
                "error: the root key is Shamir-sealed and this command needs it: use the"
                " unsealed service's REST API instead (docs/key-custody.md)",
                file=sys.stderr,
            )
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
