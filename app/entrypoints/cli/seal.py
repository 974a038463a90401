"""``keyledger operator init|unseal|seal|seal-status``: the Shamir-sealed root key
(docs/key-custody.md; ``operator rotate-root-key`` is in operator.py).

``init`` works on the database; the others talk to the running service (``--endpoint``,
default ``http://KEYLEDGER_HOST:KEYLEDGER_PORT``). A share is read from standard input (a
prompt without echo on a terminal), never from the command line, which other users of
the machine can read and shells keep in their history.

With ``--workers N`` each worker process holds its own unseal progress and root key; the
kernel spreads connections over them. So ``unseal`` gives its share again, on new
connections, until every worker has it (the answers name the worker), and ``seal``
repeats until every worker says it is sealed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from domain.shamir import DUPLICATE_SHARE

PROCESS_HEADER = "x-keyledger-process-id"  # app/entrypoints/rest/sys.py
TRIES_PER_WORKER = 25  # connections land on workers at random: enough to reach each
TIMEOUT_S = 10.0


def _settings() -> Any:
    from app.settings import load_settings

    return load_settings()


def _endpoint(args: argparse.Namespace) -> str:
    if args.endpoint:
        return str(args.endpoint).rstrip("/")
    settings = _settings()
    return f"http://{settings.host}:{settings.port}"


def _request(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], str]:
    """(status, JSON answer, the worker that answered), errors included."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            status, text, worker = answer.status, answer.read(), answer.headers.get(PROCESS_HEADER)
    except urllib.error.HTTPError as error:
        status, text, worker = error.code, error.read(), error.headers.get(PROCESS_HEADER)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise SystemExit(f"error: cannot reach {url}: {reason}") from None
    try:
        document = json.loads(text) if text else {}
    except ValueError:
        document = {"message": text.decode("utf-8", "replace")[:200]}
    return status, document if isinstance(document, dict) else {}, worker or "?"


# --- init ------------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    import base64

    from app.bootstrap import migrate
    from app.infrastructure.postgres.database import resolve_database_url
    from app.infrastructure.shamir_root_key import initialize

    settings = _settings()
    database_url = resolve_database_url(settings)
    migrate(database_url)
    record, shares = initialize(database_url, args.shares, args.threshold)
    print(f"Root key {record.root_key_id} initialized, sealed under an unseal key split into")
    print(f"{record.shares} shares, any {record.threshold} of which unseal it:\n")
    for number, share in enumerate(shares, 1):
        print(f"Unseal key share {number}: {base64.b64encode(share).decode()}")
    print(
        "\nThese shares are shown once and stored nowhere. Give each to a different keyholder"
        f"\nand store them apart: with fewer than {record.threshold} of them the root key, and"
        "\nevery key in this ledger, is lost for good."
    )
    if settings.root_key_provider != "shamir":
        print("\nServe with KEYLEDGER_ROOT_KEY_PROVIDER=shamir; the service starts sealed.")
    return 0


# --- unseal ----------------------------------------------------------------------------------
def _read_share() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("Unseal key share (not echoed): ").strip()
    return sys.stdin.readline().strip()


def cmd_unseal(args: argparse.Namespace) -> int:
    url = _endpoint(args) + "/v1/sys/unseal"
    share = _read_share()
    if not share:
        print("error: no unseal key share given on standard input", file=sys.stderr)
        return 2
    body = json.dumps({"key": share}).encode()
    reached: dict[str, dict[str, Any]] = {}
    workers, tries = 1, 0
    while len(reached) < workers:
        if tries >= TRIES_PER_WORKER * workers:
            print(f"warning: reached {len(reached)} of {workers} workers; run again")
            break
        tries += 1
        status, answer, worker = _request("POST", url, body, {"content-type": "application/json"})
        if status == 200:
            reached[worker] = answer
            workers = int(answer.get("workers") or 1)
        elif status == 400 and answer.get("message") == DUPLICATE_SHARE:
            reached.setdefault(worker, {"progress": "this share given already"})
        else:
            print(
                f"error: {answer.get('__type', status)}: {answer.get('message', '')}",
                file=sys.stderr,
            )
            return 2
    for worker, answer in sorted(reached.items()):
        if answer.get("sealed") is False:
            state = "unsealed"
        else:
            state = f"sealed, {answer.get('progress')} of {answer.get('threshold', '?')} shares"
        print(f"worker {worker}: {state}")
    return 0


# --- seal and status ---------------------------------------------------------------------------
def _signed_headers(url: str, body: bytes) -> dict[str, str]:
    """SigV4 (service kms) with the AWS credentials of the environment or profile."""
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = boto3.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise SystemExit("error: no AWS credentials (AWS_ACCESS_KEY_ID, a profile) to sign with")
    region = session.region_name or _settings().default_region
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"content-type": "application/json"}
    )
    SigV4Auth(credentials, "kms", region).add_auth(request)
    return dict(request.headers.items())


def cmd_seal(args: argparse.Namespace) -> int:
    url = _endpoint(args) + "/v1/sys/seal"
    sealed: set[str] = set()
    workers = _workers(args)
    for _attempt in range(TRIES_PER_WORKER * workers):
        status, answer, worker = _request("POST", url, b"{}", _signed_headers(url, b"{}"))
        if status == 200 or (status == 503 and answer.get("__type") == "KMSInternalException"):
            sealed.add(worker)  # 503: this worker is sealed already
        else:
            print(
                f"error: {answer.get('__type', status)}: {answer.get('message', '')}",
                file=sys.stderr,
            )
            return 2
        if len(sealed) >= workers:
            print(f"sealed: {len(sealed)} of {workers} worker(s)")
            return 0
    print(f"warning: sealed {len(sealed)} of {workers} workers only; run again", file=sys.stderr)
    return 1


def _workers(args: argparse.Namespace) -> int:
    status, answer, _ = _request("GET", _endpoint(args) + "/v1/sys/seal-status")
    return int(answer.get("workers") or 1) if status == 200 else 1


def cmd_seal_status(args: argparse.Namespace) -> int:
    status, answer, _ = _request("GET", _endpoint(args) + "/v1/sys/seal-status")
    print(json.dumps(answer, indent=2))
    return 0 if status == 200 else 2


def add_commands(operator: Any) -> None:
    """Add init, unseal, seal and seal-status to ``keyledger operator``'s subparsers."""
    init = operator.add_parser("init", help="make the root key, print its unseal key shares")
    init.add_argument("--shares", type=int, default=5, help="shares to make (default 5)")
    init.add_argument("--threshold", type=int, default=3, help="shares to unseal (default 3)")
    init.set_defaults(handler=cmd_init)

    for name, handler, text in (
        ("unseal", cmd_unseal, "give one share (read from standard input) to the service"),
        ("seal", cmd_seal, "make the service forget the root key (signed: an administrator)"),
        ("seal-status", cmd_seal_status, "whether the service is sealed, and the progress"),
    ):
        command = operator.add_parser(name, help=text)
        command.add_argument("--endpoint", help="the service (default KEYLEDGER_HOST:PORT)")
        command.set_defaults(handler=handler)
