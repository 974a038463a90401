"""How a serving process reaches the service's one unseal authority (docs/key-custody.md).

* `LocalSeal`: the authority is in this process (``keyledger run`` with one process, the
  tests' in-process services).
* `SupervisedSeal`: under ``keyledger run --workers N`` the authority is the supervisor's
  (app/entrypoints/server/seal_relay.py); each worker holds one end of a Unix socket pair
  to it. A share given to any worker goes to the supervisor; when the shares open the
  seal, the supervisor gives the unseal key to every worker (and later to each worker it
  restarts), and waits for each to have opened the seal before the unseal is answered. A
  seal likewise reaches every worker before it is answered.

The channel carries newline-delimited JSON between two processes of one service (a socket
pair, never a listening socket): the share on its way to the authority and the unseal key
on its way back, both in memory only, never in a file, a log or the database.

Worker to supervisor: ``{"id": n, "op": "submit", "share": b64}``, ``{"id": n, "op":
"reset"}``, ``{"id": n, "op": "switch", "root_key_id": id}``, ``{"id": n, "op": "seal"}``,
``{"op": "ready"}``, ``{"ack": n}``. Supervisor to worker: ``{"op": "hello", "status":
..., "key"?: b64}`` first, ``{"reply": n, "status": ...}`` or ``{"reply": n, "error":
{"type", "message"}}``, ``{"push": n, "op": "open", "key": b64, "status": ...}``,
``{"push": n, "op": "seal", "status": ...}`` (each acknowledged) and ``{"op": "status",
"status": ...}``.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

from app.infrastructure.shamir_root_key import (
    IncorrectSharesError,
    SealStatus,
    SetProgress,
    UnsealAuthority,
)
from domain import shamir
from domain.custody import NoPendingSetError, RotationUnderWayError
from domain.errors import InternalError, SealedError, ValidationError

log = logging.getLogger("keyledger.seal")

CHANNEL_FD_ENV = "KEYLEDGER_SEAL_CHANNEL_FD"  # set by the supervisor for its workers only
REPLY_TIMEOUT_S = 90.0  # an unseal waits for every worker to open the seal
HELLO_TIMEOUT_S = 30.0
# The errors an authority may answer with, by name (anything else: an internal error).
WIRE_ERRORS: dict[str, type[Exception]] = {
    cls.__name__: cls
    for cls in (
        shamir.InvalidShareError,
        shamir.DuplicateShareError,
        shamir.InvalidSplitError,
        shamir.ShamirError,
        IncorrectSharesError,
        NoPendingSetError,
        RotationUnderWayError,
        ValidationError,
        SealedError,
    )
}

Opened = Callable[[bytes], None]  # given the unseal key: open the seal, serve
Sealed = Callable[[], None]  # forget every key


class SealControl(Protocol):
    """This process's way to the unseal authority."""

    def start(self, opened: Opened, sealed: Sealed) -> None:
        """Begin: ``opened`` runs whenever the service is unsealed (or switched to a new
        set) with the unseal key, ``sealed`` whenever it is sealed."""
        ...

    def submit(self, share: bytes) -> SealStatus:
        """One share; once the status is answered every process serving has opened."""
        ...

    def reset(self) -> SealStatus: ...

    def switch(self, root_key_id: str) -> None:
        """Make the verified pending set current; once answered every process serving
        wraps under its root key."""
        ...

    def seal(self) -> None: ...

    def status(self) -> SealStatus: ...

    def close(self) -> None: ...


class LocalSeal:
    """The authority in this process."""

    def __init__(self, authority: UnsealAuthority) -> None:
        self._authority = authority
        self._opened: Opened = lambda key: None
        self._sealed: Sealed = lambda: None

    def start(self, opened: Opened, sealed: Sealed) -> None:
        self._opened, self._sealed = opened, sealed

    def submit(self, share: bytes) -> SealStatus:
        status, key = self._authority.submit(share)
        if key is not None:
            try:
                self._opened(key)
            except Exception:
                self._authority.seal()
                raise
        return status

    def reset(self) -> SealStatus:
        return self._authority.reset()

    def switch(self, root_key_id: str) -> None:
        self._opened(self._authority.switch(root_key_id))

    def seal(self) -> None:
        self._authority.seal()
        self._sealed()

    def status(self) -> SealStatus:
        return self._authority.status()

    def close(self) -> None:
        return None


# --- the wire ---------------------------------------------------------------------------------
def status_document(status: SealStatus) -> dict[str, Any]:
    return status.public()


def status_of(document: dict[str, Any]) -> SealStatus:
    new_set = document.get("new_set")
    return SealStatus(
        bool(document["sealed"]),
        int(document["progress"]),
        int(document["threshold"]),
        int(document["shares"]),
        SetProgress(
            str(new_set["root_key_id"]),
            int(new_set["progress"]),
            int(new_set["threshold"]),
            int(new_set["shares"]),
            bool(new_set.get("verified")),
        )
        if new_set
        else None,
    )


def error_document(error: Exception) -> dict[str, str]:
    if type(error).__name__ in WIRE_ERRORS:  # their messages never hold a share or a key
        return {"type": type(error).__name__, "message": str(error)}
    return {"type": "InternalError", "message": "the unseal authority failed"}


def error_of(document: dict[str, Any]) -> Exception:
    kind = WIRE_ERRORS.get(str(document.get("type")))
    message = str(document.get("message", ""))
    return kind(message) if kind is not None else InternalError(message)


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode()


def decode_key(text: str) -> bytes:
    return base64.b64decode(text)


class Channel:
    """One end of the socket pair: JSON lines out (thread-safe), JSON lines in."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._reader = sock.makefile("rb")
        self._write_lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        with self._write_lock:
            self.sock.sendall(line)

    def receive(self) -> dict[str, Any] | None:
        """The next message; None when the other end has gone."""
        try:
            line = self._reader.readline()
        except OSError:
            return None
        if not line:
            return None
        try:
            message = json.loads(line)
        except ValueError:  # never from our own processes: skipped, not fatal
            return {}
        return message if isinstance(message, dict) else {}

    def close(self) -> None:
        for part in (self._reader, self.sock):
            with contextlib.suppress(OSError):
                part.close()


# --- a worker's end ------------------------------------------------------------------------------
class SupervisedSeal:
    """This worker's end of the supervisor's authority (``keyledger run --workers N``)."""

    def __init__(self, sock: socket.socket) -> None:
        self._channel = Channel(sock)
        self._ids = itertools.count(1)
        self._waiting: dict[int, Future[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._status: SealStatus | None = None
        self._opened: Opened = lambda key: None
        self._sealed: Sealed = lambda: None
        self._reader: threading.Thread | None = None

    @classmethod
    def from_environment(cls) -> SupervisedSeal | None:
        """The channel the supervisor gave this worker; None when not under a supervisor
        (or when no Shamir-sealed key is involved)."""
        fd = os.environ.get(CHANNEL_FD_ENV)
        if not fd:
            return None
        return cls(socket.socket(fileno=int(fd)))

    def start(self, opened: Opened, sealed: Sealed) -> None:
        """Take the supervisor's hello (and the unseal key if the service is unsealed)
        before this worker serves, then follow it."""
        self._opened, self._sealed = opened, sealed
        self._channel.sock.settimeout(HELLO_TIMEOUT_S)
        hello = self._channel.receive()
        self._channel.sock.settimeout(None)
        if hello is None or hello.get("op") != "hello":
            raise InternalError("the supervisor's unseal authority did not answer")
        self._status = status_of(hello["status"])
        if hello.get("key"):
            self._open(decode_key(hello["key"]))
        self._channel.send({"op": "ready"})
        self._reader = threading.Thread(target=self._follow, name="seal-channel", daemon=True)
        self._reader.start()

    def _open(self, key: bytes) -> bool:
        try:
            self._opened(key)
        except Exception:
            log.exception("the unseal key from the supervisor did not open the seal here")
            return False
        return True

    def _follow(self) -> None:
        while (message := self._channel.receive()) is not None:
            if "status" in message:
                self._status = status_of(message["status"])
            if "reply" in message:
                with self._lock:
                    waiting = self._waiting.pop(int(message["reply"]), None)
                if waiting is not None:
                    waiting.set_result(message)
            elif "push" in message:
                self._pushed(message)
        log.warning("the supervisor's unseal authority went away")
        with self._lock:
            waiting_all, self._waiting = list(self._waiting.values()), {}
        for waiting in waiting_all:
            waiting.set_exception(InternalError("the supervisor's unseal authority went away"))

    def _pushed(self, message: dict[str, Any]) -> None:
        ok = True
        if message.get("op") == "open":
            ok = self._open(decode_key(message["key"]))
        elif message.get("op") == "seal":
            self._sealed()
        self._channel.send({"ack": message["push"], "ok": ok})

    def _ask(self, op: str, **fields: Any) -> SealStatus:
        number = next(self._ids)
        answer: Future[dict[str, Any]] = Future()
        with self._lock:
            self._waiting[number] = answer
        self._channel.send({"id": number, "op": op, **fields})
        message = answer.result(timeout=REPLY_TIMEOUT_S)
        if "error" in message:
            raise error_of(message["error"])
        return status_of(message["status"])

    def submit(self, share: bytes) -> SealStatus:
        return self._ask("submit", share=encode_key(share))

    def reset(self) -> SealStatus:
        return self._ask("reset")

    def switch(self, root_key_id: str) -> None:
        self._ask("switch", root_key_id=root_key_id)

    def seal(self) -> None:
        self._ask("seal")

    def status(self) -> SealStatus:
        status = self._status
        if status is None:
            raise InternalError("the supervisor's unseal authority has not answered yet")
        return status

    def close(self) -> None:
        self._channel.close()
