"""The unseal authority of ``keyledger run --workers N``, kept by the supervisor
(docs/key-custody.md, "Several workers").

Each worker process holds its own root key in memory, and the kernel spreads connections
over the workers: unsealed one by one, a service would answer some calls and refuse others
until every worker had been given every share, and a worker restarted after a crash would
stay sealed until the keyholders came back. So the service has one authority over the
shares, here: every worker forwards the shares it is given (app/infrastructure/
seal_control.py), the authority combines them, and when they open the seal it gives the
unseal key to every worker over each one's socket pair, and answers the unseal only once
each has opened the seal. It keeps the unseal key in memory while unsealed, so that a
worker it restarts is unsealed before it serves; a seal reaches every worker before it is
answered, and the supervisor forgets the key with them.

Requests are handled one at a time by one thread (the authority's order is the order the
workers see); each worker's socket has a reader thread of its own, so acknowledgements
are read while a request waits for them.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from app.infrastructure.seal_control import (
    Channel,
    decode_key,
    encode_key,
    error_document,
    status_document,
)
from app.infrastructure.shamir_root_key import UnsealAuthority
from domain.errors import DomainError

log = logging.getLogger("keyledger.seal")
ACK_TIMEOUT_S = 60.0  # a worker opening the seal reads from the database


@dataclass(eq=False)
class _Worker:
    channel: Channel
    ready: threading.Event = field(default_factory=threading.Event)
    acks: dict[int, threading.Event] = field(default_factory=dict)


class SealRelay:
    """The service's one unseal authority and the channels to its workers."""

    def __init__(self, database_url: str) -> None:
        self.authority = UnsealAuthority(database_url)
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._requests: queue.Queue[tuple[_Worker, dict[str, Any]] | None] = queue.Queue()
        self._pushes = itertools.count(1)
        self._thread = threading.Thread(target=self._serve, name="unseal authority", daemon=True)
        self._thread.start()

    def attach(self) -> socket.socket:
        """A new worker's end of a fresh socket pair (to pass to it, then close here). It
        is greeted with the service's state, and the unseal key when unsealed."""
        ours, theirs = socket.socketpair()
        worker = _Worker(Channel(ours))
        key = self.authority.unseal_key
        hello: dict[str, Any] = {"op": "hello", "status": status_document(self.authority.status())}
        if key is not None:
            hello["key"] = encode_key(key)
        worker.channel.send(hello)
        with self._lock:
            self._workers.append(worker)
        reader = threading.Thread(target=self._read, args=(worker,), name="seal channel")
        reader.daemon = True
        reader.start()
        return theirs

    def stop(self) -> None:
        self._requests.put(None)
        with self._lock:
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.channel.close()

    # --- each worker's reader ---------------------------------------------------------------
    def _read(self, worker: _Worker) -> None:
        while (message := worker.channel.receive()) is not None:
            if "ack" in message:
                done = worker.acks.get(int(message["ack"]))
                if done is not None:
                    done.set()
            elif message.get("op") == "ready":
                worker.ready.set()
            elif "id" in message:
                self._requests.put((worker, message))
        with self._lock:  # the worker exited: the supervisor restarts it with a new pair
            if worker in self._workers:
                self._workers.remove(worker)
        for done in list(worker.acks.values()):  # nothing to wait for from it any more
            done.set()
        worker.channel.close()

    # --- the requests, one at a time --------------------------------------------------------
    def _serve(self) -> None:
        while (item := self._requests.get()) is not None:
            worker, message = item
            reply: dict[str, Any] = {"reply": message["id"]}
            try:
                self._handle(message)
            except Exception as error:  # answered to the worker; never a share in a message
                if not isinstance(error, DomainError):
                    log.exception("unseal authority: %s failed", message.get("op"))
                reply["error"] = error_document(error)
            # Every worker learns the progress (a refused set resets it for all).
            status = status_document(self.authority.status())
            self._tell_all(status, but=worker)
            with contextlib.suppress(OSError):  # the worker has gone
                worker.channel.send(reply | {"status": status})

    def _handle(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "submit":
            _status, key = self.authority.submit(decode_key(str(message["share"])))
            if key is not None:  # opened, or a new set made current: every worker opens
                self._push_to_all({"op": "open", "key": encode_key(key)})
        elif op == "switch":  # a signed rotation asked for the verified new set
            key = self.authority.switch(str(message["root_key_id"]))
            self._push_to_all({"op": "open", "key": encode_key(key)})
        elif op == "reset":
            self.authority.reset()
        elif op == "seal":
            self.authority.seal()
            self._push_to_all({"op": "seal"})
        else:
            raise ValueError(f"unknown request {op!r}")

    def _tell_all(self, status: dict[str, Any], but: _Worker) -> None:
        for worker in self._snapshot():
            if worker is not but:
                with contextlib.suppress(OSError):
                    worker.channel.send({"op": "status", "status": status})

    def _push_to_all(self, message: dict[str, Any]) -> None:
        """Send to every worker; wait until each that is serving has acknowledged (one
        still starting takes it in order, before it serves)."""
        status = status_document(self.authority.status())
        waiting: list[tuple[_Worker, threading.Event]] = []
        for worker in self._snapshot():
            number = next(self._pushes)
            done = threading.Event()
            worker.acks[number] = done
            try:
                worker.channel.send({**message, "push": number, "status": status})
            except OSError:
                continue
            if worker.ready.is_set():
                waiting.append((worker, done))
        deadline = time.monotonic() + ACK_TIMEOUT_S
        for worker, done in waiting:
            if not done.wait(max(0.0, deadline - time.monotonic())):
                log.warning("a worker did not acknowledge the %s in time", message["op"])
            worker.acks.clear()

    def _snapshot(self) -> list[_Worker]:
        with self._lock:
            return list(self._workers)
