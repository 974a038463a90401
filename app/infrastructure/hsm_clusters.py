"""CloudHSM "clusters" for custom key stores: PKCS#11 tokens (SoftHSM2 in tests).

Each cluster id of ``cloudhsm_clusters`` names a token (module and label). Connecting a
store logs in to its token with the store's KeyStorePassword as the user PIN and keeps
that session for the store until it is disconnected; a refused PIN, a locked PIN or a
missing token become AWS's ConnectionErrorCode. The PIN is never logged or kept here
beyond the login.
"""

from __future__ import annotations

import logging
import threading
import uuid
from contextlib import suppress
from pathlib import Path
from typing import Any

import pkcs11
from pkcs11 import exceptions as p11

from app.ports import HsmCluster

log = logging.getLogger("keyledger.hsm_clusters")


class Pkcs11Clusters:
    """The configured clusters, and one logged-in session per connected store."""

    def __init__(self, clusters: dict[str, dict[str, str]], default_module: str) -> None:
        self._config = {
            cluster_id: (
                entry.get("module") or default_module,
                entry["token_label"],
                entry.get("trust_anchor"),
            )
            for cluster_id, entry in clusters.items()
        }
        self._sessions: dict[uuid.UUID, Any] = {}
        self._lock = threading.Lock()

    def cluster(self, cluster_id: str) -> HsmCluster | None:
        found = self._config.get(cluster_id)
        if found is None:
            return None
        module, label, anchor = found
        return HsmCluster(cluster_id, f"{module}#{label}", anchor)

    def connect(self, store: uuid.UUID, cluster_id: str, pin: str) -> str | None:
        found = self._config.get(cluster_id)
        if found is None:
            return "CLUSTER_NOT_FOUND"
        module, label, _ = found
        if not Path(module).exists():
            return "CLUSTER_NOT_FOUND"
        try:
            token = pkcs11.lib(module).get_token(token_label=label)
        except (p11.NoSuchToken, p11.MultipleTokensReturned):
            return "CLUSTER_NOT_FOUND"
        except p11.PKCS11Error as error:
            log.warning("cluster %s: %s", cluster_id, type(error).__name__)
            return "INTERNAL_ERROR"
        try:
            session = token.open(user_pin=pin)
        except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
            return "INVALID_CREDENTIALS"
        except p11.PinLocked:
            return "USER_LOCKED_OUT"
        except p11.UserAlreadyLoggedIn:
            # Another login of this process holds the token (AWS: the kmsuser is logged in).
            return "USER_LOGGED_IN"
        except p11.PKCS11Error as error:
            log.warning("cluster %s: login failed: %s", cluster_id, type(error).__name__)
            return "INTERNAL_ERROR"
        with self._lock:
            previous = self._sessions.pop(store, None)
            self._sessions[store] = session
        if previous is not None:
            _close(previous)
        return None

    def disconnect(self, store: uuid.UUID) -> None:
        with self._lock:
            session = self._sessions.pop(store, None)
        if session is not None:
            _close(session)

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            _close(session)


def _close(session: Any) -> None:
    with suppress(p11.PKCS11Error):
        session.close()
