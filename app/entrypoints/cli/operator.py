"""``keyledger operator ...``: the root key's custody (docs/key-custody.md).

    keyledger operator rotate-root-key [--batch-size N]
    keyledger operator create-hsm-key [--label L]      (operator_pkcs11.py)
    keyledger operator init | unseal | seal | seal-status    (seal.py: the shamir provider)

Run with the NEW root key as the current one and the old one(s) as previous
(``KEYLEDGER_ROOT_KEY=<new>`` and ``KEYLEDGER_PREVIOUS_ROOT_KEYS=<old>``), the same settings
the service runs with: it re-wraps every wrapping key under the new key while the service
keeps serving, shows its progress, and resumes where it stopped if run again.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from app.auth.credentials import OPERATOR_ACTOR
from app.settings import load_settings
from app.usecases.custody import DEFAULT_BATCH, RootKeyRotation


def cmd_rotate_root_key(args: argparse.Namespace) -> int:
    from app.bootstrap import Runtime

    settings = load_settings()
    runtime = Runtime.build(settings)  # refuses rows under a root key it was not given
    runtime.writer.start()
    try:
        rotation = RootKeyRotation(
            vault=runtime.vault,
            runner=runtime.writer,
            clock=runtime.clock,
            actor=OPERATOR_ACTOR,
            account_id=settings.default_account_id,
            region=settings.default_region,
        )

        def progress(done: int, total: int) -> None:
            share = 100 * done / total if total else 100.0
            print(f"re-wrapped {done:,} of {total:,} wrapping keys ({share:.0f}%)", flush=True)

        outcome = rotation.run(args.batch_size, progress)
    finally:
        runtime.stop()
    if outcome is None:
        print(
            f"nothing to rotate: every wrapping key is under root key {runtime.vault.root_key_id}"
        )
        return 0
    resumed = " (resumed)" if outcome.resumed else ""
    print(
        f"rotated{resumed}: {outcome.rewrapped:,} wrapping key(s) now under root key"
        f" {outcome.to_key_id}; root key(s) {', '.join(outcome.from_key_ids) or '-'} are no"
        " longer needed: remove them from KEYLEDGER_PREVIOUS_ROOT_KEYS, restart, then destroy"
        " them",
        file=sys.stdout,
    )
    return 0


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
    rotate.set_defaults(handler=cmd_rotate_root_key)

    from app.entrypoints.cli import operator_pkcs11

    operator_pkcs11.add_commands(operator)  # create-hsm-key

    from app.entrypoints.cli import seal as cli_seal

    cli_seal.add_commands(operator)  # init, unseal, seal, seal-status (the shamir provider)
