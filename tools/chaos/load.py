"""Legitimate load that remembers what the service acknowledged, and a /readyz prober.

`Load` runs threads, each with its own keep-alive connection, sending Encrypt (mostly),
Decrypt of earlier ciphertexts and GenerateDataKey over a few keys, paced to a total rate
(or as fast as they can). Every attempt is recorded (`Attempt`: when, how long, status);
every acknowledged operation (HTTP 200) also as an `Ack`: its request id, key, ciphertext,
the plaintext the harness chose (or the data key it was given) and its encryption context.
After the run those are the promises the service made, checked one by one.
"""

from __future__ import annotations

import base64
import math
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tools.bench.bench import Credentials
from tools.chaos.clients import Connection, KmsClient, Reply

OPERATIONS = ("Encrypt", "Decrypt", "GenerateDataKey")
WEIGHTS = (0.70, 0.15, 0.15)
RECONNECT_PAUSE_S = 0.05
RECENT = 50  # Decrypt picks among the last acknowledged ciphertexts


@dataclass(frozen=True, slots=True)
class Ack:
    """An operation the service acknowledged (HTTP 200)."""

    operation: str
    request_id: str
    key_id: str
    ciphertext: bytes  # empty for Decrypt
    plaintext: bytes  # chosen by the harness (Encrypt), or answered (GenerateDataKey, Decrypt)
    context: tuple[tuple[str, str], ...]
    done: float

    def context_dict(self) -> dict[str, str] | None:
        return dict(self.context) if self.context else None


@dataclass(frozen=True, slots=True)
class Attempt:
    operation: str
    sent: float
    done: float
    status: int  # HTTP status, 0 connection failed, -1 timed out
    error_type: str


@dataclass(slots=True)
class WindowStats:
    seconds: float
    ok: int
    failed: int
    ops_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(
        len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1)
    )  # nearest rank
    return sorted_values[index]


@dataclass
class Recorder:
    """Everything the load saw. Appends from many threads (list.append is atomic)."""

    acks: list[Ack] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    wrong_plaintexts: list[str] = field(default_factory=list)  # Decrypt answered other bytes

    def first_success_after(self, moment: float) -> float | None:
        """``done`` of the earliest acknowledged attempt sent at or after ``moment``."""
        best: float | None = None
        for attempt in reversed(self.attempts):
            if attempt.sent < moment - 60.0:
                break
            if attempt.status == 200 and attempt.sent >= moment:
                best = attempt.done if best is None else min(best, attempt.done)
        return best

    def window(self, start: float, end: float) -> WindowStats:
        chosen = [a for a in self.attempts if start <= a.sent < end]
        latencies = sorted(1e3 * (a.done - a.sent) for a in chosen if a.status == 200)
        seconds = max(end - start, 1e-9)
        return WindowStats(
            seconds=seconds,
            ok=len(latencies),
            failed=len(chosen) - len(latencies),
            ops_per_s=len(latencies) / seconds,
            p50_ms=percentile(latencies, 0.50),
            p99_ms=percentile(latencies, 0.99),
            max_ms=latencies[-1] if latencies else None,
        )


class Load:
    """``threads`` threads of legitimate KMS calls, paced to ``rate`` ops/s in total
    (0: unpaced). Use as a context manager, or `start` / `stop`."""

    def __init__(
        self,
        endpoint: str,
        creds: Credentials,
        keys: Sequence[str],
        recorder: Recorder,
        *,
        threads: int,
        rate: float,
        timeout: float,
        seed: int,
        run_id: str,
    ) -> None:
        if not keys:
            raise ValueError("the load needs at least one key")
        self.endpoint = endpoint
        self.creds = creds
        self.keys = list(keys)
        self.recorder = recorder
        self.threads = threads
        self.rate = rate
        self.timeout = timeout
        self.seed = seed
        self.run_id = run_id
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._sequence = 0
        self._lock = threading.Lock()

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def start(self) -> None:
        self._stop.clear()
        self._workers = [
            threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True)
            for i in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        """Stop and wait for the calls in flight (each ends within the client's timeout)."""
        self._stop.set()
        deadline = time.monotonic() + self.timeout + 5.0
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        self._workers = []

    def _next_sequence(self) -> int:
        with self._lock:
            self._sequence += 1
            return self._sequence

    def _run(self, index: int) -> None:
        rng = random.Random(self.seed * 1_000 + index + self._next_sequence() * 7919)
        client = KmsClient(self.endpoint, self.creds, timeout=self.timeout, retry_stale=False)
        interval = self.threads / self.rate if self.rate > 0 else 0.0
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                if interval:
                    now = time.monotonic()
                    if next_at > now:
                        if self._stop.wait(next_at - now):
                            break
                    elif now - next_at > 1.0:
                        next_at = now  # fell behind (an outage): do not burst afterwards
                    next_at += interval
                reply = self._one(client, rng)
                if reply.status <= 0:
                    self._stop.wait(RECONNECT_PAUSE_S)
        finally:
            client.close()

    def _one(self, client: KmsClient, rng: random.Random) -> Reply:
        operation = rng.choices(OPERATIONS, WEIGHTS)[0]
        sealed = [a for a in self.recorder.acks[-RECENT:] if a.ciphertext]
        if operation == "Decrypt" and not sealed:
            operation = "Encrypt"
        key_id = rng.choice(self.keys)
        context: tuple[tuple[str, str], ...] = ()
        if rng.random() < 0.3:
            context = (("chaos-run", self.run_id), ("n", str(self._next_sequence())))
        params: dict[str, Any]
        plaintext = b""
        source: Ack | None = None
        if operation == "Encrypt":
            plaintext = rng.randbytes(rng.randint(1, 64))
            params = {"KeyId": key_id, "Plaintext": plaintext}
        elif operation == "GenerateDataKey":
            params = {"KeyId": key_id, "KeySpec": "AES_256"}
        else:
            source = rng.choice(sealed)
            key_id, context = source.key_id, source.context
            params = {"CiphertextBlob": source.ciphertext}
        if context:
            params["EncryptionContext"] = dict(context)
        reply = client.call(operation, params)
        self.recorder.attempts.append(
            Attempt(operation, reply.sent, reply.done, reply.status, reply.error_type())
        )
        if reply.status == 200:
            self._acknowledged(operation, reply, key_id, plaintext, context, source)
        return reply

    def _acknowledged(
        self,
        operation: str,
        reply: Reply,
        key_id: str,
        plaintext: bytes,
        context: tuple[tuple[str, str], ...],
        source: Ack | None,
    ) -> None:
        answer = reply.json() or {}
        ciphertext = b""
        if operation in ("Encrypt", "GenerateDataKey"):
            ciphertext = base64.b64decode(answer.get("CiphertextBlob", ""))
        if operation == "GenerateDataKey":
            plaintext = base64.b64decode(answer.get("Plaintext", ""))
        if operation == "Decrypt":
            plaintext = base64.b64decode(answer.get("Plaintext", ""))
            if source is not None and plaintext != source.plaintext:
                self.recorder.wrong_plaintexts.append(
                    f"Decrypt {reply.request_id} of {source.request_id}: other plaintext"
                )
        self.recorder.acks.append(
            Ack(operation, reply.request_id, key_id, ciphertext, plaintext, context, reply.done)
        )


@dataclass(frozen=True, slots=True)
class Probe:
    sent: float
    done: float
    status: int  # HTTP status, 0 connection failed, -1 no answer within the timeout
    error: str = ""  # the transport failure, if any (what a "no answer" was)


class ReadyProbe:
    """GET /readyz every ``interval`` seconds (each with ``timeout``), in a thread, each on
    a connection of its own, as a kubelet or load balancer probes: a keep-alive connection
    the server closed between two probes would fail the next one before it reached
    /readyz (seen once in a short chaos run: a probe "with no answer" 62 ms after it was sent,
    while the service answered every other probe), which says nothing of readiness."""

    def __init__(
        self, host: str, port: int, *, interval: float = 0.1, timeout: float = 2.0
    ) -> None:
        self.interval = interval
        self.timeout = timeout
        self.probes: list[Probe] = []
        self._connection = Connection(host, port, timeout, retry_stale=False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="readyz-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 2.0)
            self._thread = None
        self._connection.close()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            reply = self._connection.send("GET", "/readyz", b"", {})
            self._connection.close()
            self.probes.append(Probe(reply.sent, reply.done, reply.status, reply.error))
            next_at = max(next_at + self.interval, time.monotonic())
            if self._stop.wait(max(0.0, next_at - time.monotonic())):
                return
