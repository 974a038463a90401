"""CloudHSM "clusters" for custom key stores: PKCS#11 tokens (SoftHSM2 in tests).

Each cluster id of ``cloudhsm_clusters`` names a token (module and label). Connecting a
store logs in to its token with the store's KeyStorePassword as the user PIN and keeps
that session for the store until it is disconnected; a refused PIN, a locked PIN or a
missing token become AWS's ConnectionErrorCode. The PIN is never logged or kept here
beyond the login.

The keys of a store live in its token: AES-256, sensitive and never extractable, labelled
by their KeyMaterialId, used with CKM_AES_GCM inside the token. A process that did not
connect the store itself (another worker) logs in on its first use, with the PIN the
store's sealed password gives. A PKCS#11 session runs one operation at a time, so each
store's session has a lock; key handles are cached (bounded).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.mechanisms import GCMParams

from app.infrastructure.pkcs11_root_key import KEY_BITS, ROOT_KEY_TEMPLATE
from app.ports import HsmCluster
from app.support.lru import BoundedLru
from domain.errors import KeyUnavailableError

KEY_HANDLES = 4096  # cached token key handles, over every store
TAG_BITS = 128

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
        self._session_locks: dict[uuid.UUID, threading.Lock] = {}
        # (store, session, label): a handle belongs to the session that found it (a
        # cached handle keeps its session object, so its id is never reused meanwhile).
        self._handles: BoundedLru[tuple[uuid.UUID, int, str], Any] = BoundedLru(KEY_HANDLES)
        self._lock = threading.Lock()

    def cluster(self, cluster_id: str) -> HsmCluster | None:
        found = self._config.get(cluster_id)
        if found is None:
            return None
        module, label, anchor = found
        return HsmCluster(cluster_id, f"{module}#{label}", anchor)

    def connect(self, store: uuid.UUID, cluster_id: str, pin: str) -> str | None:
        opened = self._open(cluster_id, pin)
        if isinstance(opened, str):
            return opened
        self._keep(store, opened)
        return None

    def _open(self, cluster_id: str, pin: str) -> Any:
        """A logged-in session to the cluster's token, or AWS's ConnectionErrorCode."""
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
            session = token.open(user_pin=pin, rw=True)  # rw: it creates keys
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
        return session

    def _keep(self, store: uuid.UUID, session: Any) -> None:
        with self._lock:
            previous = self._sessions.pop(store, None)
            self._sessions[store] = session
            self._session_locks.setdefault(store, threading.Lock())
        if previous is not None:
            _close(previous)

    def disconnect(self, store: uuid.UUID) -> None:
        with self._lock:
            session = self._sessions.pop(store, None)
        if session is not None:
            _close(session)

    # ==== keys in the token ==========================================================
    def _session(self, store: uuid.UUID, cluster_id: str, pin: Callable[[], str]) -> Any:
        with self._lock:
            session = self._sessions.get(store)
        if session is not None:
            return session
        opened = self._open(cluster_id, pin())
        if isinstance(opened, str):  # the store cannot be reached from here
            raise KeyUnavailableError(f"The CloudHSM cluster is unavailable ({opened}).")
        self._keep(store, opened)
        return opened

    def _in_session(
        self, store: uuid.UUID, cluster_id: str, pin: Callable[[], str], work: Callable[[Any], Any]
    ) -> Any:
        session = self._session(store, cluster_id, pin)
        with self._lock:
            lock = self._session_locks.setdefault(store, threading.Lock())
        try:
            with lock:
                return work(session)
        except p11.PKCS11Error as error:
            log.warning("cluster %s: %s", cluster_id, type(error).__name__)
            if isinstance(error, p11.SessionHandleInvalid | p11.SessionClosed | p11.DeviceRemoved):
                self.disconnect(store)  # the next use logs in again
            raise KeyUnavailableError(
                "The CloudHSM cluster did not complete the request."
            ) from None

    def _key(self, store: uuid.UUID, session: Any, label: str) -> Any:
        cached = (store, id(session), label)
        handle = self._handles.get(cached)
        if handle is None:
            try:
                handle = session.get_key(
                    object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=label
                )
            except p11.NoSuchKey:
                raise KeyUnavailableError(
                    "The key's material is not in its CloudHSM cluster."
                ) from None
            self._handles.put(cached, handle)
        return handle

    def generate_key(
        self, store: uuid.UUID, cluster_id: str, pin: Callable[[], str], label: str
    ) -> None:
        def generate(session: Any) -> None:
            # The root key's attributes: usable only inside the token, never readable.
            session.generate_key(
                KeyType.AES, KEY_BITS, label=label, store=True, template=ROOT_KEY_TEMPLATE
            )

        self._in_session(store, cluster_id, pin, generate)

    def destroy_key(
        self, store: uuid.UUID, cluster_id: str, pin: Callable[[], str], label: str
    ) -> bool:
        def destroy(session: Any) -> bool:
            self._handles.pop((store, id(session), label))
            found = list(
                session.get_objects(
                    {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label}
                )
            )
            for key in found:
                key.destroy()
            return bool(found)

        return bool(self._in_session(store, cluster_id, pin, destroy))

    def encrypt(
        self,
        store: uuid.UUID,
        cluster_id: str,
        pin: Callable[[], str],
        label: str,
        nonce: bytes,
        plaintext: bytes,
        aad: bytes,
    ) -> bytes:
        def encrypt(session: Any) -> bytes:
            key = self._key(store, session, label)
            params = GCMParams(nonce, aad or None, TAG_BITS)
            return bytes(
                key.encrypt(plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=params)
            )

        return bytes(self._in_session(store, cluster_id, pin, encrypt))

    def decrypt(
        self,
        store: uuid.UUID,
        cluster_id: str,
        pin: Callable[[], str],
        label: str,
        nonce: bytes,
        ciphertext: bytes,
        aad: bytes,
    ) -> bytes | None:
        def decrypt(session: Any) -> bytes | None:
            key = self._key(store, session, label)
            params = GCMParams(nonce, aad or None, TAG_BITS)
            try:
                return bytes(
                    key.decrypt(ciphertext, mechanism=Mechanism.AES_GCM, mechanism_param=params)
                )
            except (p11.EncryptedDataInvalid, p11.EncryptedDataLenRange, p11.GeneralError):
                # The tag did not verify (SoftHSM2 reports it as a general error): the
                # ciphertext's fault, not the token's.
                return None

        found = self._in_session(store, cluster_id, pin, decrypt)
        return None if found is None else bytes(found)

    def random(self, store: uuid.UUID, cluster_id: str, pin: Callable[[], str], size: int) -> bytes:
        return bytes(
            self._in_session(store, cluster_id, pin, lambda s: s.generate_random(size * 8))
        )

    def close(self) -> None:
        """Close every session (the process logs out of each token)."""
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
            self._handles = BoundedLru(KEY_HANDLES)
        for session in sessions:
            _close(session)


def _close(session: Any) -> None:
    with suppress(p11.PKCS11Error):
        session.close()
