"""``keyledger operator init|unseal|seal|seal-status``: the Shamir-sealed root key
(docs/key-custody.md; ``operator rotate-root-key`` is in operator.py).

``init`` works on the database; the others talk to the running service (``--endpoint``,
default ``http://KEYLEDGER_HOST:KEYLEDGER_PORT``). A share is read from standard input (a
prompt without echo on a terminal), never from the command line, which other users of
the machine can read and shells keep in their history.

Under ``keyledger run --workers N`` the supervisor keeps the service's one unseal
authority: a share given to any worker counts for all, and a seal seals them all
(app/entrypoints/server/seal_relay.py), so each command is one call.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import urllib.error
import urllib.request
from typing import Any

TIMEOUT_S = 90.0  # an unseal is answered once every worker has opened the seal


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
) -> tuple[int, dict[str, Any]]:
    """(status, JSON answer), errors included."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            status, text = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise SystemExit(f"error: cannot reach {url}: {reason}") from None
    try:
        document = json.loads(text) if text else {}
    except ValueError:
        document = {"message": text.decode("utf-8", "replace")[:200]}
    return status, document if isinstance(document, dict) else {}


def _refused(status: int, answer: dict[str, Any]) -> int:
    print(f"error: {answer.get('__type', status)}: {answer.get('message', '')}", file=sys.stderr)
    return 2


# --- init ------------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    import base64

    from app.bootstrap import migrate, named_root_key_ids
    from app.infrastructure.postgres.database import resolve_database_url
    from app.infrastructure.shamir_root_key import initialize

    settings = _settings()
    database_url = resolve_database_url(settings)
    migrate(database_url)
    known = [] if args.rotate else named_root_key_ids(settings)
    record, shares = initialize(
        database_url, args.shares, args.threshold, known_ids=known, rotate=args.rotate
    )
    kind = "A new Shamir set: root key" if args.rotate else "Root key"
    print(f"{kind} {record.root_key_id} initialized, sealed under an unseal key split into")
    print(f"{record.shares} shares, any {record.threshold} of which unseal it:\n")
    for number, share in enumerate(shares, 1):
        print(f"Unseal key share {number}: {base64.b64encode(share).decode()}")
    print(
        "\nThese shares are shown once and stored nowhere. Give each to a different keyholder"
        f"\nand store them apart: with fewer than {record.threshold} of them the root key, and"
        "\nevery key in this ledger, is lost for good."
    )
    print(_next_step(settings, args.rotate, record.threshold, record.root_key_id))
    return 0


def _next_step(settings: Any, rotate: bool, threshold: int, key_id: str) -> str:
    if rotate:
        return (
            f"\nThe new set is pending: {threshold} of its keyholders give their share to the"
            "\nrunning, unsealed service (keyledger operator unseal), which verifies them;"
            "\nthen an administrator makes it current and re-wraps every key under it:"
            f"\nkeyledger operator rotate-root-key --endpoint <the service> --new-set {key_id}"
            "\n(the old set's shares open nothing afterwards)"
        )
    moving = settings.previous_root_keys or settings.pkcs11_previous_key_labels
    if settings.root_key_provider == "shamir" and not moving:
        return "\nThe service starts sealed: give it the shares (keyledger operator unseal)."
    return (
        "\nServe with KEYLEDGER_ROOT_KEY_PROVIDER=shamir (it starts sealed) and, while rows are"
        "\nunder the old key, that key as previous (KEYLEDGER_PREVIOUS_ROOT_KEYS or"
        "\nKEYLEDGER_PKCS11_PREVIOUS_KEY_LABELS); once unsealed, re-wrap them:"
        f"\nkeyledger operator rotate-root-key --endpoint <the service> --to {key_id}"
    )


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
    status, answer = _request("POST", url, body, {"content-type": "application/json"})
    if status != 200:
        return _refused(status, answer)
    new_set = answer.get("new_set")
    if answer.get("sealed") is False and new_set and new_set.get("verified"):
        print(
            f"unsealed; new Shamir set {new_set.get('root_key_id')} verified: make it current"
            f" and re-wrap with keyledger operator rotate-root-key --endpoint ... --new-set"
            f" {new_set.get('root_key_id')}"
        )
    elif answer.get("sealed") is False and new_set:
        print(
            f"unsealed; new Shamir set {new_set.get('root_key_id')}: {new_set.get('progress')}"
            f" of {new_set.get('threshold')} shares given"
        )
    elif answer.get("sealed") is False:
        print(f"unsealed ({answer.get('workers', 1)} worker(s))")
    else:
        print(f"sealed, {answer.get('progress')} of {answer.get('threshold', '?')} shares")
    return 0


# --- seal and status ---------------------------------------------------------------------------
def signed_headers(url: str, body: bytes) -> dict[str, str]:
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
    status, answer = _request("POST", url, b"{}", signed_headers(url, b"{}"))
    if status == 503 and answer.get("__type") == "KMSInternalException":
        print("sealed already")  # nobody can be authenticated while sealed
        return 0
    if status != 200:
        return _refused(status, answer)
    print(f"sealed ({answer.get('workers', 1)} worker(s))")
    return 0


def cmd_seal_status(args: argparse.Namespace) -> int:
    status, answer = _request("GET", _endpoint(args) + "/v1/sys/seal-status")
    print(json.dumps(answer, indent=2))
    return 0 if status == 200 else 2


def add_commands(operator: Any) -> None:
    """Add init, unseal, seal and seal-status to ``keyledger operator``'s subparsers."""
    init = operator.add_parser("init", help="make the root key, print its unseal key shares")
    init.add_argument("--shares", type=int, default=5, help="shares to make (default 5)")
    init.add_argument("--threshold", type=int, default=3, help="shares to unseal (default 3)")
    init.add_argument(
        "--rotate",
        action="store_true",
        help="a new Shamir set (new root key, new shares) for a root-key rotation, pending"
        " until T of its shares are given to the running service",
    )
    init.set_defaults(handler=cmd_init)

    for name, handler, text in (
        ("unseal", cmd_unseal, "give one share (read from standard input) to the service"),
        ("seal", cmd_seal, "make the service forget the root key (signed: an administrator)"),
        ("seal-status", cmd_seal_status, "whether the service is sealed, and the progress"),
    ):
        command = operator.add_parser(name, help=text)
        command.add_argument("--endpoint", help="the service (default KEYLEDGER_HOST:PORT)")
        command.set_defaults(handler=handler)
