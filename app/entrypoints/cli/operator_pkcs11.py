"""``keyledger operator create-hsm-key``: the root key generated inside a PKCS#11 token
(docs/key-custody.md). The token, PIN and module come from the ``KEYLEDGER_PKCS11_*``
settings; the key's label from ``--label`` or ``KEYLEDGER_PKCS11_KEY_LABEL``.

    keyledger operator create-hsm-key [--label L]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from app.settings import load_settings


def cmd_create_hsm_key(args: argparse.Namespace) -> int:
    from app.infrastructure.pkcs11_root_key import Pkcs11Config, create_hsm_key
    from app.infrastructure.root_keys import RootKeyError

    settings = load_settings()
    try:
        config = Pkcs11Config.from_settings(settings, key_label=args.label)
        key_id = create_hsm_key(config)
    except RootKeyError as error:
        print(f"keyledger operator create-hsm-key: {error}", file=sys.stderr)
        return 1
    print(
        f"created the root key {config.key_label!r} in PKCS#11 token {config.token_name}:"
        f" AES-256, sensitive, never extractable; root key id {key_id}\n"
        "serve with it: KEYLEDGER_ROOT_KEY_PROVIDER=pkcs11"
        f" KEYLEDGER_PKCS11_KEY_LABEL={config.key_label}"
    )
    return 0


def add_commands(operator: Any) -> None:
    """Add ``create-hsm-key`` to the ``keyledger operator`` subparsers."""
    create = operator.add_parser(
        "create-hsm-key",
        help="generate the root key inside the PKCS#11 token (KEYLEDGER_PKCS11_* settings)",
    )
    create.add_argument(
        "--label", help="the key's label (default KEYLEDGER_PKCS11_KEY_LABEL, keyledger-root)"
    )
    create.set_defaults(handler=cmd_create_hsm_key)
