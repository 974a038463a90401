"""A SoftHSM2 token of the test session's own, for the PKCS#11 root-key tests.

SoftHSM2 reads its configuration (SOFTHSM2_CONF: where its tokens live) once, when the
library is first loaded into a process, and python-pkcs11 keeps it loaded: so one token
directory per process, made once, holding one token initialised before that load. Tests
tell their keys apart by label. `make test` installs SoftHSM2 (tools/install-softhsm2.sh);
without it the tests that need a token skip and say so.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
MISSING = "softhsm2 is not installed: `make system-packages` (apt-get install softhsm2)"


@dataclass(frozen=True)
class SoftHsm:
    conf: Path
    token_label: str
    pin: str = field(repr=False)
    module: str = MODULE

    def settings(self, key_label: str, **overrides: object) -> dict[str, object]:
        """Service settings with the root key in this token (and no root key bytes)."""
        return {
            "root_key": None,
            "root_key_provider": "pkcs11",
            "pkcs11_module": self.module,
            "pkcs11_token_label": self.token_label,
            "pkcs11_pin": self.pin,
            "pkcs11_key_label": key_label,
            **overrides,
        }

    def env(self, key_label: str) -> dict[str, str]:
        """The same as KEYLEDGER_* variables, for a ``keyledger`` process."""
        return {
            "SOFTHSM2_CONF": str(self.conf),
            "KEYLEDGER_ROOT_KEY_PROVIDER": "pkcs11",
            "KEYLEDGER_PKCS11_MODULE": self.module,
            "KEYLEDGER_PKCS11_TOKEN_LABEL": self.token_label,
            "KEYLEDGER_PKCS11_PIN": self.pin,
            "KEYLEDGER_PKCS11_KEY_LABEL": key_label,
        }


_token: SoftHsm | None = None


def softhsm_token() -> SoftHsm:
    """This process's test token (made on first use); skips the test without SoftHSM2."""
    global _token
    if _token is not None:
        return _token
    if shutil.which("softhsm2-util") is None or not Path(MODULE).exists():
        pytest.skip(MISSING)
    home = Path(tempfile.mkdtemp(prefix="keyledger-softhsm-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    (home / "tokens").mkdir()
    conf = home / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {home / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)  # before the library's first load here
    token = SoftHsm(conf, "keyledger-test", pin=secrets.token_hex(8))
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            token.token_label,
            "--pin",
            token.pin,
            "--so-pin",
            secrets.token_hex(8),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
    )
    _token = token
    return token


def new_label(prefix: str = "root") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"
