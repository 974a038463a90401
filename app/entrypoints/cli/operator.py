"""``keyledger operator ...``: the root key's custody (docs/key-custody.md).

    keyledger operator rotate-root-key [--batch-size N] [--endpoint URL]
    keyledger operator create-hsm-key [--label L]      (operator_pkcs11.py)
    keyledger operator init | unseal | seal | seal-status    (seal.py: the shamir provider)

``rotate-root-key`` re-wraps every wrapping key under the current root key while the
service keeps serving, shows its progress, and resumes where it stopped if run again. Run
it with the settings the service runs with: the NEW root key current and the old one(s)
previous (``KEYLEDGER_ROOT_KEY=<new>`` and ``KEYLEDGER_PREVIOUS_ROOT_KEYS=<old>``, or a
token's labels). A Shamir-sealed key, current or previous, opens only in the unsealed
service: then ``--endpoint`` asks the service to re-wrap (signed with the environment's
AWS credentials, an administrator of the operator account) and follows its progress.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from app.auth.credentials import OPERATOR_ACTOR
from app.settings import load_settings
from app.usecases.custody import DEFAULT_BATCH

STREAM_TIMEOUT_S = 3600.0  # between two progress lines (a batch may wait for a row's lock)


def _progress(done: int, total: int) -> None:
    share = min(100.0, 100 * done / total) if total else 100.0
    print(f"re-wrapped {done:,} of {total:,} wrapping keys ({share:.0f}%)", flush=True)


def cmd_rotate_root_key(args: argparse.Namespace) -> int:
    if args.endpoint:
        return _rotate_in_service(args)
    if args.new_set or args.to:
        print(
            "keyledger operator rotate-root-key: --new-set and --to need --endpoint",
            file=sys.stderr,
        )
        return 2
    from app.bootstrap import Runtime

    settings = load_settings()
    runtime = Runtime.build(settings)  # refuses rows under a root key it was not given
    if runtime.custody is not None:
        runtime.stop()
        print(
            "keyledger operator rotate-root-key: a Shamir-sealed root key is involved; it"
            " opens only in the unsealed service: run with --endpoint <the service's URL>",
            file=sys.stderr,
        )
        return 2
    runtime.writer.start()
    try:
        outcome = runtime.rotate_root_key(OPERATOR_ACTOR, args.batch_size, _progress)
    finally:
        runtime.stop()
    _report(outcome.public())
    return 0


def _report(outcome: dict[str, Any]) -> None:
    to_key = outcome["to_root_key_id"]
    destroyed = list(outcome.get("destroyed_root_key_ids") or [])
    if not outcome["rotated"]:
        print(f"nothing to rotate: every wrapping key is under root key {to_key}")
    else:
        resumed = " (resumed)" if outcome["resumed"] else ""
        print(
            f"rotated{resumed}: {outcome['rewrapped']:,} wrapping key(s) now under root key"
            f" {to_key}"
        )
    if destroyed:
        print(f"destroyed the sealed root key(s) {', '.join(destroyed)}: nothing needs them")
    kept = [key for key in outcome["from_root_key_ids"] if key not in destroyed]
    if outcome["rotated"] and kept:
        print(
            f"root key(s) {', '.join(kept)} are no longer needed: remove them from"
            " KEYLEDGER_PREVIOUS_ROOT_KEYS, KEYLEDGER_PKCS11_PREVIOUS_KEY_LABELS or"
            " KEYLEDGER_SHAMIR_PREVIOUS, restart, then destroy them"
        )


def _rotate_in_service(args: argparse.Namespace) -> int:
    """POST /v1/sys/rotate-root-key: the service (first making the verified new Shamir set
    current, when named) re-wraps and streams its progress, one JSON line at a time; the
    last line is the outcome (or the error)."""
    from app.entrypoints.cli.seal import signed_headers

    url = args.endpoint.rstrip("/") + "/v1/sys/rotate-root-key"
    fields: dict[str, Any] = {"batch_size": args.batch_size}
    for name in ("new_set", "to"):
        if getattr(args, name):
            fields[name] = getattr(args, name)
    body = json.dumps(fields).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    for name, value in signed_headers(url, body).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=STREAM_TIMEOUT_S) as answer:
            for line in answer:
                message = json.loads(line)
                if "outcome" in message:
                    _report(message["outcome"])
                    return 0
                if "error" in message:
                    error = message["error"]
                    print(f"error: {error.get('__type')}: {error.get('message')}", file=sys.stderr)
                    return 1
                _progress(int(message["progress"]["done"]), int(message["progress"]["total"]))
    except urllib.error.HTTPError as error:
        refused = json.loads(error.read() or b"{}")
        print(
            f"error: {refused.get('__type', error.code)}: {refused.get('message', '')}",
            file=sys.stderr,
        )
        return 2
    except (urllib.error.URLError, OSError, ValueError) as error:
        print(f"error: the rotation's progress stopped: {error}", file=sys.stderr)
    else:
        print(
            "error: the service stopped answering before the rotation completed",
            file=sys.stderr,
        )
    print("run the command again: the rotation resumes where it stopped", file=sys.stderr)
    return 1


def _batch(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError("--batch-size is 1 to 10,000")
    return value


def add_commands(commands: Any) -> None:
    """Add ``operator`` to the ``keyledger`` command's subparsers."""
    operator = commands.add_parser(
        "operator", help="the root key's custody: rotation, the HSM key; Shamir init, unseal, seal"
    ).add_subparsers(dest="action", required=True)
    rotate = operator.add_parser(
        "rotate-root-key",
        help="re-wrap every wrapping key under the current root key (online, resumable)",
    )
    rotate.add_argument("--batch-size", type=_batch, default=DEFAULT_BATCH)
    rotate.add_argument(
        "--endpoint",
        help="re-wrap in the running service (needed when a Shamir-sealed key is involved;"
        " signed with the environment's AWS credentials)",
    )
    rotate.add_argument(
        "--new-set",
        metavar="ROOT_KEY_ID",
        help="first make this pending Shamir set current (the id init --rotate printed; T of"
        " its shares given to the service); with --endpoint",
    )
    rotate.add_argument(
        "--to",
        metavar="ROOT_KEY_ID",
        help="the root key the rows move under, checked by the service; needed when it is"
        " Shamir-sealed (the id init printed); with --endpoint",
    )
    rotate.set_defaults(handler=cmd_rotate_root_key)

    from app.entrypoints.cli import operator_pkcs11

    operator_pkcs11.add_commands(operator)  # create-hsm-key

    from app.entrypoints.cli import seal as cli_seal

    cli_seal.add_commands(operator)  # init, unseal, seal, seal-status (the shamir provider)
