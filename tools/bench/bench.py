"""KeyLedger benchmark: drive AWS KMS operations over SigV4-signed HTTP and print one table.

A tool, not a test. It speaks the AWS KMS JSON 1.1 protocol (``POST /``) to one or more
endpoints (KeyLedger, moto, ...) and measures Encrypt / Decrypt / GenerateDataKey at several
concurrency levels, side by side.

The load generator is deliberately lean so that it is not the bottleneck on a small machine:
a raw asyncio (uvloop when available) HTTP/1.1 keep-alive client with one connection per unit
of concurrency, each connection driven by callbacks (send, wait for the full response, send
again), every request signed with SigV4 over a fresh X-Amz-Date (the derived signing key is
cached per day, the HMAC is computed per request), and responses parsed only as far as the
status line, Content-Length / chunked framing and the body. ``--processes N`` spreads the
connections over N worker processes and merges their latency samples.

Run ``python -m tools.bench --help`` (``make bench``).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import hashlib
import hmac
import json
import multiprocessing
import os
import platform
import ssl
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from tools.bench.lag import LagSampler

OPERATIONS: tuple[str, ...] = ("Encrypt", "Decrypt", "GenerateDataKey")
# KeyLedger answers TrentService.Noop with {} before authentication: the ceiling of its
# HTTP stack on this machine. Other endpoints answer it with an error.
EXTRA_OPERATIONS: tuple[str, ...] = ("Noop",)
CONTENT_TYPE = "application/x-amz-json-1.1"
SERVICE = "kms"
USER_AGENT = "keyledger-bench/1"
PLAINTEXT = bytes(range(64))  # the 64-byte plaintext of the Encrypt workload
DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
DEFAULT_DURATION = 10.0
ERROR_BODY_LIMIT = 600

_T = TypeVar("_T")


# --------------------------------------------------------------------------- targets & creds
@dataclass(frozen=True, slots=True)
class Target:
    """One endpoint under test."""

    name: str
    url: str
    scheme: str
    host: str  # what to connect to (hostname or IP, no brackets)
    port: int
    host_header: str  # Host header value, as botocore derives it (default port omitted)

    @classmethod
    def parse(cls, name: str, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"{url!r}: scheme must be http or https")
        if not parts.hostname:
            raise ValueError(f"{url!r}: no host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"{url!r}: the KMS endpoint is POST / (no path or query allowed)")
        default_port = 443 if parts.scheme == "https" else 80
        port = parts.port or default_port
        host = parts.hostname  # lower-cased by urlsplit
        shown = f"[{host}]" if ":" in host else host
        host_header = shown if port == default_port else f"{shown}:{port}"
        return cls(name, url, parts.scheme, host, port, host_header)


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    region: str
    session_token: str | None = None


# --------------------------------------------------------------------------- SigV4
def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.digest(key, msg.encode(), "sha256")


def _derive_signing_key(secret_access_key: str, day: str, region: str, service: str) -> bytes:
    k = _hmac(f"AWS4{secret_access_key}".encode(), day)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


class _Signer:
    """Minimal, fast SigV4 for the KMS JSON protocol: ``POST /`` with no query string.

    Signs exactly the headers content-type, host, x-amz-date, x-amz-target (plus
    x-amz-security-token when a session token is set), over the SHA-256 of the body, which is
    what botocore's ``SigV4Auth`` signs for the same request. The derived signing key is cached
    per UTC day; the canonical request hash and the final HMAC are computed per call.
    """

    __slots__ = ("_creds", "_day", "_key", "_sec", "_stamp", "host_header")

    def __init__(self, creds: Credentials, host_header: str) -> None:
        self._creds = creds
        self.host_header = host_header
        self._day = ""
        self._key = b""
        self._sec = -1
        self._stamp = ""

    def _amz_date(self, now: float) -> str:
        sec = int(now)
        if sec != self._sec:
            self._stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(sec))
            self._sec = sec
        return self._stamp

    def _signing_key(self, day: str) -> bytes:
        if day != self._day:
            c = self._creds
            self._key = _derive_signing_key(c.secret_access_key, day, c.region, SERVICE)
            self._day = day
        return self._key

    def prepare(self, amz_target: str, body: bytes) -> _PreparedRequest:
        return _PreparedRequest(self, amz_target, body)

    def sign(self, amz_target: str, body: bytes, now: float | None = None) -> tuple[str, str, str]:
        """Return (x-amz-date, authorization, signed-headers) for one request (slow path)."""
        prepared = _PreparedRequest(self, amz_target, body)
        amz_date, auth = prepared.sign(time.time() if now is None else now)
        return amz_date, auth, prepared.signed_headers


class _PreparedRequest:
    """One operation's constant request parts, ready to be signed and sent many times."""

    __slots__ = (
        "_auth_prefix",
        "_canon_prefix",
        "_canon_suffix",
        "_scope_suffix",
        "_signer",
        "_wire_prefix",
        "_wire_suffix",
        "body",
        "signed_headers",
    )

    def __init__(self, signer: _Signer, amz_target: str, body: bytes) -> None:
        creds = signer._creds
        self._signer = signer
        self.body = body
        token = creds.session_token
        names = ["content-type", "host", "x-amz-date"]
        if token:
            names.append("x-amz-security-token")
        names.append("x-amz-target")
        self.signed_headers = ";".join(names)
        token_line = f"x-amz-security-token:{' '.join(token.split())}\n" if token else ""
        self._canon_prefix = (
            f"POST\n/\n\ncontent-type:{CONTENT_TYPE}\nhost:{signer.host_header}\nx-amz-date:"
        )
        self._canon_suffix = (
            f"\n{token_line}x-amz-target:{amz_target}\n\n{self.signed_headers}\n"
            f"{hashlib.sha256(body).hexdigest()}"
        )
        self._scope_suffix = f"/{creds.region}/{SERVICE}/aws4_request"
        self._auth_prefix = f"AWS4-HMAC-SHA256 Credential={creds.access_key_id}/"
        token_header = f"X-Amz-Security-Token: {token}\r\n" if token else ""
        self._wire_prefix = (
            f"POST / HTTP/1.1\r\nHost: {signer.host_header}\r\n"
            f"User-Agent: {USER_AGENT}\r\nContent-Type: {CONTENT_TYPE}\r\n"
            f"X-Amz-Target: {amz_target}\r\n{token_header}"
            f"Content-Length: {len(body)}\r\nX-Amz-Date: "
        ).encode()
        self._wire_suffix = b"\r\n\r\n" + body

    def sign(self, now: float) -> tuple[str, str]:
        """Return (x-amz-date, Authorization header value) for a request sent at ``now``."""
        signer = self._signer
        amz_date = signer._amz_date(now)
        day = amz_date[:8]
        key = signer._signing_key(day)
        scope = day + self._scope_suffix
        canonical_hash = hashlib.sha256(
            (self._canon_prefix + amz_date + self._canon_suffix).encode()
        ).hexdigest()
        string_to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{canonical_hash}"
        signature = hmac.digest(key, string_to_sign.encode(), "sha256").hex()
        auth = (
            f"{self._auth_prefix}{scope}, SignedHeaders={self.signed_headers}, "
            f"Signature={signature}"
        )
        return amz_date, auth

    def wire(self, now: float) -> bytes:
        """The complete HTTP/1.1 request bytes, freshly signed."""
        amz_date, auth = self.sign(now)
        return b"".join(
            (
                self._wire_prefix,
                amz_date.encode(),
                b"\r\nAuthorization: ",
                auth.encode(),
                self._wire_suffix,
            )
        )


def check_signer_against_botocore() -> list[str]:
    """Sign the same requests with ``_Signer`` and botocore's ``SigV4Auth``; return mismatches."""
    import datetime
    from unittest import mock

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    problems: list[str] = []
    now = 1_700_000_123.0
    fixed = datetime.datetime.fromtimestamp(now, datetime.UTC).replace(tzinfo=None)
    cases = [
        ("http://127.0.0.1:8080", None, "TrentService.Encrypt", b'{"KeyId":"k"}'),
        ("http://localhost:80", None, "TrentService.Decrypt", b'{"CiphertextBlob":"AAAA"}'),
        ("https://kms.example.test", "tok/en+==", "TrentService.GenerateDataKey", b"{}"),
        ("http://[::1]:5055/", None, "TrentService.CreateKey", b""),
    ]
    for url, token, amz_target, body in cases:
        creds = Credentials(
            "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "eu-west-3", token
        )
        target = Target.parse("check", url)
        amz_date, auth, _ = _Signer(creds, target.host_header).sign(amz_target, body, now)
        request = AWSRequest(
            method="POST",
            url=url,
            data=body,
            headers={
                "Content-Type": CONTENT_TYPE,
                "X-Amz-Target": amz_target,
                "User-Agent": USER_AGENT,
            },
        )
        boto_creds = BotoCredentials(creds.access_key_id, creds.secret_access_key, token)
        with mock.patch("botocore.auth.get_current_datetime", return_value=fixed):
            SigV4Auth(boto_creds, SERVICE, creds.region).add_auth(request)
        if request.headers["X-Amz-Date"] != amz_date:
            problems.append(f"{url}: date {amz_date} != {request.headers['X-Amz-Date']}")
        if request.headers["Authorization"] != auth:
            problems.append(f"{url}: {auth!r} != {request.headers['Authorization']!r}")
    return problems


# --------------------------------------------------------------------------- HTTP connection
_ResponseCallback = Callable[[int, bytes, bool], None]
_LostCallback = Callable[[BaseException | None], None]


def _parse_chunked(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``pos``; return (body, end) or None if incomplete."""
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            if len(buf) < pos + 2:
                return None
            if buf[pos : pos + 2] == b"\r\n":
                return bytes(out), pos + 2
            end = buf.find(b"\r\n\r\n", pos)
            return None if end < 0 else (bytes(out), end + 4)
        if len(buf) < pos + size + 2:
            return None
        out += buf[pos : pos + size]
        pos += size + 2


class _HTTPConnection(asyncio.Protocol):
    """An HTTP/1.1 client connection: one request in flight at a time, responses to a callback.

    ``on_response(status, body, keep_alive)`` is called once per complete response;
    ``on_lost(exc)`` once when the peer or the network ends the connection (not after our own
    ``close()`` / ``abort()``, so a replaced connection never reports into its successor).
    """

    __slots__ = (
        "_buf",
        "_chunked",
        "_close",
        "_head_end",
        "_need",
        "_status",
        "closed",
        "on_lost",
        "on_response",
        "transport",
    )

    def __init__(self, on_response: _ResponseCallback, on_lost: _LostCallback) -> None:
        self.on_response = on_response
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buf = bytearray()
        self._head_end = -1  # index just past the blank line, -1 while reading the head
        self._need = -1  # body length: >= 0 known, -1 chunked, -2 until close
        self._status = 0
        self._chunked = False
        self._close = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        buf = self._buf
        buf += data
        while buf:
            if self._head_end < 0:
                idx = buf.find(b"\r\n\r\n")
                if idx < 0:
                    return
                head = bytes(buf[:idx]).lower()
                self._status = status = int(buf[9:12])
                self._head_end = idx + 4
                keep_alive = head.startswith(b"http/1.1")
                if b"\r\nconnection:" in head:
                    if b"\r\nconnection: close" in head or b"\r\nconnection:close" in head:
                        keep_alive = False
                    elif b"keep-alive" in head:
                        keep_alive = True
                self._close = not keep_alive
                i = head.find(b"\r\ncontent-length:")
                if i >= 0:
                    j = head.find(b"\r\n", i + 2)
                    self._need = int(head[i + 17 : j if j >= 0 else len(head)])
                elif b"\r\ntransfer-encoding:" in head and b"chunked" in head:
                    self._need = -1
                elif status < 200 or status in (204, 304):
                    self._need = 0
                else:
                    self._need = -2
            start = self._head_end
            need = self._need
            if need >= 0:
                end = start + need
                if len(buf) < end:
                    return
                body = bytes(buf[start:end])
            elif need == -1:
                parsed = _parse_chunked(buf, start)
                if parsed is None:
                    return
                body, end = parsed
            else:
                return  # body runs until the server closes the connection
            del buf[:end]
            self._head_end = -1
            status = self._status
            if 100 <= status < 200:
                continue  # interim response; the real one follows
            self.on_response(status, body, not self._close)
            if self._close or self.closed:
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return  # we hung up ourselves: the owner already knows
        self.closed = True
        if self._head_end >= 0 and self._need == -2:
            body = bytes(self._buf[self._head_end :])
            self._buf.clear()
            self._head_end = -1
            self.on_response(self._status, body, False)
        self.on_lost(exc)


def _ssl_context(target: Target, insecure: bool) -> ssl.SSLContext | None:
    if target.scheme != "https":
        return None
    ctx = ssl.create_default_context()
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _open(
    target: Target, insecure: bool, on_response: _ResponseCallback, on_lost: _LostCallback
) -> _HTTPConnection:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(
        lambda: _HTTPConnection(on_response, on_lost),
        target.host,
        target.port,
        ssl=_ssl_context(target, insecure),
        server_hostname=target.host if target.scheme == "https" else None,
    )
    return proto


class _OneShotClient:
    """A sequential request/response client over one keep-alive connection (for setup)."""

    def __init__(self, target: Target, creds: Credentials, insecure: bool) -> None:
        self._target = target
        self._insecure = insecure
        self._signer = _Signer(creds, target.host_header)
        self._conn: _HTTPConnection | None = None
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def _on_response(self, status: int, body: bytes, keep_alive: bool) -> None:
        if not keep_alive and self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((status, body))

    def _on_lost(self, exc: BaseException | None) -> None:
        self._conn = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    async def call(self, operation: str, payload: dict[str, Any], timeout: float) -> Any:
        """Call one KMS operation; return the decoded JSON answer or raise ``_SetupError``."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        request = self._signer.prepare(f"TrentService.{operation}", body).wire(time.time())
        if self._conn is None or self._conn.closed:
            self._conn = await asyncio.wait_for(
                _open(self._target, self._insecure, self._on_response, self._on_lost), timeout
            )
        self._waiter = asyncio.get_running_loop().create_future()
        self._conn.write(request)
        status, answer = await asyncio.wait_for(self._waiter, timeout)
        if status != 200:
            raise _SetupError(f"{operation}: HTTP {status}: {_show_body(answer)}")
        return json.loads(answer) if answer else {}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _SetupError(Exception):
    pass


def _show_body(body: bytes) -> str:
    text = body[:ERROR_BODY_LIMIT].decode("utf-8", "replace")
    return text + ("..." if len(body) > ERROR_BODY_LIMIT else "")


# --------------------------------------------------------------------------- setup
@dataclass(slots=True)
class _TargetState:
    target: Target
    key_id: str = ""
    created_key: bool = False
    bodies: dict[str, bytes] = field(default_factory=dict)
    error: str | None = None


def _operation_bodies(key_id: str, ciphertext_b64: str) -> dict[str, bytes]:
    def dumps(obj: dict[str, Any]) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    return {
        "Encrypt": dumps({"KeyId": key_id, "Plaintext": base64.b64encode(PLAINTEXT).decode()}),
        "Decrypt": dumps({"CiphertextBlob": ciphertext_b64}),
        "GenerateDataKey": dumps({"KeyId": key_id, "KeySpec": "AES_256"}),
        "Noop": b"{}",
    }


async def _setup_target(
    state: _TargetState, creds: Credentials, key_id: str | None, insecure: bool, timeout: float
) -> None:
    """CreateKey (unless given), Encrypt once for the Decrypt workload, check a round trip."""
    client = _OneShotClient(state.target, creds, insecure)
    try:
        if key_id:
            state.key_id = key_id
        else:
            created = await client.call(
                "CreateKey",
                {
                    "Description": "keyledger bench (safe to delete)",
                    "KeySpec": "SYMMETRIC_DEFAULT",
                    "KeyUsage": "ENCRYPT_DECRYPT",
                },
                timeout,
            )
            state.key_id = created["KeyMetadata"]["KeyId"]
            state.created_key = True
        plaintext_b64 = base64.b64encode(PLAINTEXT).decode()
        encrypted = await client.call(
            "Encrypt", {"KeyId": state.key_id, "Plaintext": plaintext_b64}, timeout
        )
        ciphertext_b64 = encrypted["CiphertextBlob"]
        decrypted = await client.call("Decrypt", {"CiphertextBlob": ciphertext_b64}, timeout)
        if base64.b64decode(decrypted.get("Plaintext", "")) != PLAINTEXT:
            raise _SetupError("Decrypt round trip returned a different plaintext")
        state.bodies = _operation_bodies(state.key_id, ciphertext_b64)
    except (TimeoutError, _SetupError, OSError, KeyError, ValueError) as exc:
        state.error = f"setup failed: {type(exc).__name__}: {exc}"
    finally:
        client.close()


async def _cleanup_target(
    state: _TargetState, creds: Credentials, insecure: bool, timeout: float
) -> str | None:
    client = _OneShotClient(state.target, creds, insecure)
    try:
        await client.call(
            "ScheduleKeyDeletion", {"KeyId": state.key_id, "PendingWindowInDays": 7}, timeout
        )
        return None
    except (TimeoutError, _SetupError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()


# --------------------------------------------------------------------------- load generation
@dataclass(frozen=True, slots=True)
class _CellSpec:
    """What one process runs for one (target, operation, concurrency) cell. Picklable."""

    target: Target
    creds: Credentials
    operation: str
    body: bytes
    connections: int
    warmup: float
    duration: float
    timeout: float
    insecure: bool
    use_uvloop: bool
    start_at: float | None  # wall-clock time to start sending (aligns processes), None: asap
    # When set, the lanes of this process take these bodies in turn (one shared cursor),
    # instead of ``body``: e.g. Encrypt over many keys, each used once before any repeats.
    bodies: tuple[bytes, ...] = ()


@dataclass(slots=True)
class _CellRaw:
    """One process's raw measurements for one cell."""

    latencies: bytes = b""  # array('d') of seconds, successful responses in the window
    ok: int = 0
    errors: int = 0
    first_error: str | None = None
    error_kinds: dict[str, tuple[int, str]] = field(default_factory=dict)  # kind: (n, first)
    cpu_seconds: float = 0.0
    fatal: str | None = None
    # Every answer, including warm-up and drain (to reconcile with what the server stored).
    all_ok: int = 0
    all_errors: int = 0


class _Stats:
    __slots__ = (
        "all_errors",
        "all_ok",
        "errors",
        "first_error",
        "kinds",
        "latencies",
        "m_end",
        "m_start",
    )

    def __init__(self, m_start: float, m_end: float) -> None:
        self.latencies: list[float] = []
        self.all_ok = 0
        self.all_errors = 0
        self.errors = 0
        self.first_error: str | None = None
        self.kinds: dict[str, tuple[int, str]] = {}
        self.m_start = m_start
        self.m_end = m_end

    def error(self, now: float, kind: str, message: str | bytes) -> None:
        """Count an error of ``kind`` if it happened inside the measurement window.

        ``message`` (a response body as bytes, or text) is kept for the first error of each kind.
        """
        self.all_errors += 1
        if self.m_start <= now < self.m_end:
            self.errors += 1
            seen = self.kinds.get(kind)
            if seen is not None:
                self.kinds[kind] = (seen[0] + 1, seen[1])
                return
            text = _show_body(message) if isinstance(message, bytes) else message
            self.kinds[kind] = (1, text)
            if self.first_error is None:
                self.first_error = f"{kind}: {text}"


class _Rotation:
    """Prepared requests taken in turn by every lane of one process."""

    __slots__ = ("_index", "_prepared")

    def __init__(self, prepared: list[_PreparedRequest]) -> None:
        self._prepared = prepared
        self._index = 0

    def next(self) -> _PreparedRequest:
        prepared = self._prepared[self._index % len(self._prepared)]
        self._index += 1
        return prepared


class _Lane:
    """One connection sending requests back to back until the measurement window closes."""

    __slots__ = (
        "_prepared",
        "_reconnecting",
        "_rotation",
        "_spec",
        "_stats",
        "busy",
        "conn",
        "sent_at",
        "stopping",
        "task",
    )

    def __init__(
        self,
        spec: _CellSpec,
        prepared: _PreparedRequest,
        stats: _Stats,
        rotation: _Rotation | None = None,
    ) -> None:
        self._spec = spec
        self._prepared = prepared
        self._rotation = rotation
        self._stats = stats
        self.conn: _HTTPConnection | None = None
        self.busy = False
        self.stopping = False
        self.sent_at = 0.0
        self._reconnecting = False
        self.task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.conn = await _open(
            self._spec.target, self._spec.insecure, self._on_response, self._on_lost
        )

    def fire(self) -> None:
        conn = self.conn
        if conn is None or conn.closed:
            self._schedule_reconnect(0.0)
            return
        now = time.time()
        prepared = self._prepared if self._rotation is None else self._rotation.next()
        data = prepared.wire(now)
        self.busy = True
        self.sent_at = time.perf_counter()
        conn.write(data)

    def _on_response(self, status: int, body: bytes, keep_alive: bool) -> None:
        now = time.perf_counter()
        self.busy = False
        stats = self._stats
        if status == 200:
            stats.all_ok += 1
            if stats.m_start <= now < stats.m_end:
                stats.latencies.append(now - self.sent_at)
        else:
            stats.error(now, f"HTTP {status}", body)
        if now >= stats.m_end or self.stopping:
            return  # the window is over: this lane stays idle
        if keep_alive:
            self.fire()
        elif self.conn is not None:
            self.conn.close()
            self._schedule_reconnect(0.0)

    def _on_lost(self, exc: BaseException | None) -> None:
        if self.busy:
            self.busy = False
            why = "closed by the server" if exc is None else repr(exc)
            self._stats.error(time.perf_counter(), "connection lost", why)
            if not self.stopping:
                self._schedule_reconnect(0.05)

    def _schedule_reconnect(self, delay: float) -> None:
        if self._reconnecting or self.stopping:
            return
        self._reconnecting = True
        self.task = asyncio.get_running_loop().create_task(self._reconnect(delay))

    async def _reconnect(self, delay: float) -> None:
        try:
            while not self.stopping:
                if delay:
                    await asyncio.sleep(delay)
                try:
                    await asyncio.wait_for(self.connect(), self._spec.timeout)
                except (TimeoutError, OSError) as exc:
                    self._stats.error(time.perf_counter(), "connect failed", repr(exc))
                    delay = 0.1
                    continue
                break
        finally:
            self._reconnecting = False
        if not self.stopping and time.perf_counter() < self._stats.m_end:
            self.fire()

    def check_timeout(self, now: float) -> None:
        if self.busy and now - self.sent_at > self._spec.timeout:
            self.busy = False
            self._stats.error(now, "timeout", f"no response within {self._spec.timeout:g} s")
            if self.conn is not None:
                self.conn.abort()
            self._schedule_reconnect(0.0)


async def _run_cell_async(spec: _CellSpec) -> _CellRaw:
    signer = _Signer(spec.creds, spec.target.host_header)
    prepared = signer.prepare(f"TrentService.{spec.operation}", spec.body)
    stats = _Stats(float("inf"), float("inf"))
    rotation = None
    if spec.bodies:
        operation = f"TrentService.{spec.operation}"
        rotation = _Rotation([signer.prepare(operation, body) for body in spec.bodies])
    lanes = [_Lane(spec, prepared, stats, rotation) for _ in range(spec.connections)]
    try:
        await asyncio.wait_for(asyncio.gather(*(lane.connect() for lane in lanes)), spec.timeout)
    except (TimeoutError, OSError) as exc:
        for lane in lanes:
            if lane.conn is not None:
                lane.conn.close()
        return _CellRaw(fatal=f"connect failed: {type(exc).__name__}: {exc}")

    wall, pc = time.time(), time.perf_counter()
    start = pc + max(0.0, spec.start_at - wall) if spec.start_at is not None else pc
    stats.m_start = start + spec.warmup
    stats.m_end = stats.m_start + spec.duration
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    for lane in lanes:
        lane.fire()

    async def watch_until(deadline: float) -> None:
        while (remaining := deadline - time.perf_counter()) > 0:
            await asyncio.sleep(min(0.25, remaining))
            now = time.perf_counter()
            for lane in lanes:
                lane.check_timeout(now)

    await watch_until(stats.m_start)
    cpu0 = time.process_time()
    await watch_until(stats.m_end)
    cpu1 = time.process_time()

    # Let in-flight requests finish (they fall outside the window), then hang up.
    drain_until = time.perf_counter() + min(spec.timeout, 5.0)
    while any(lane.busy for lane in lanes) and time.perf_counter() < drain_until:
        await asyncio.sleep(0.01)
    stats.all_errors += sum(lane.busy for lane in lanes)  # abandoned: outcome unknown
    for lane in lanes:
        lane.stopping = True
        if lane.conn is not None:
            lane.conn.close()
        if lane.task is not None and not lane.task.done():
            lane.task.cancel()
    await asyncio.sleep(0)

    return _CellRaw(
        latencies=array.array("d", stats.latencies).tobytes(),
        ok=len(stats.latencies),
        errors=stats.errors,
        first_error=stats.first_error,
        error_kinds=stats.kinds,
        cpu_seconds=cpu1 - cpu0,
        all_ok=stats.all_ok,
        all_errors=stats.all_errors,
    )


def _run(coro_factory: Callable[[], Coroutine[Any, Any, _T]], use_uvloop: bool) -> _T:
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if use_uvloop:
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coro_factory())


def _run_cell(spec: _CellSpec) -> _CellRaw:
    """Entry point of one process for one cell (also used in-process)."""
    return _run(lambda: _run_cell_async(spec), spec.use_uvloop)


def _noop(delay: float) -> int:
    time.sleep(delay)
    return os.getpid()


# --------------------------------------------------------------------------- results
@dataclass(slots=True)
class CellResult:
    target: str
    url: str
    operation: str
    concurrency: int
    processes: int
    duration_s: float
    ok: int = 0
    errors: int = 0
    ops_per_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    client_cpu_pct: float = 0.0
    first_error: str | None = None
    error_kinds: dict[str, dict[str, Any]] = field(default_factory=dict)  # count, first
    samples_us: list[int] | None = None
    all_ok: int = 0  # successes including warm-up and drain
    all_errors: int = 0  # errors including warm-up and drain


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (q in [0, 100])."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n * q / 100), at least 1
    return sorted_values[min(len(sorted_values), int(rank)) - 1]


def _merge(
    target: Target,
    operation: str,
    concurrency: int,
    duration: float,
    raws: list[_CellRaw],
    keep_samples: bool,
) -> CellResult:
    result = CellResult(target.name, target.url, operation, concurrency, len(raws), duration)
    samples = array.array("d")
    for raw in raws:
        result.all_ok += raw.all_ok
        result.all_errors += raw.all_errors + (1 if raw.fatal else 0)
        kinds = dict(raw.error_kinds)
        if raw.fatal:
            kinds["fatal"] = (1, raw.fatal)
        for kind, (count, first) in kinds.items():
            entry = result.error_kinds.setdefault(kind, {"count": 0, "first": first})
            entry["count"] += count
            result.errors += count
        result.first_error = result.first_error or raw.first_error or raw.fatal
        if raw.fatal:
            continue
        samples.frombytes(raw.latencies)
        result.client_cpu_pct += 100.0 * raw.cpu_seconds / duration if duration else 0.0
    ordered = sorted(samples)
    result.ok = len(ordered)
    result.ops_per_s = result.ok / duration if duration else 0.0
    if ordered:
        result.latency_ms = {
            "min": ordered[0] * 1e3,
            "mean": sum(ordered) / len(ordered) * 1e3,
            "p50": _percentile(ordered, 50) * 1e3,
            "p90": _percentile(ordered, 90) * 1e3,
            "p99": _percentile(ordered, 99) * 1e3,
            "p999": _percentile(ordered, 99.9) * 1e3,
            "max": ordered[-1] * 1e3,
        }
    if keep_samples:
        result.samples_us = [round(s * 1e6) for s in samples]
    return result


def _format_table(results: list[CellResult]) -> str:
    headers = ["target", "operation", "concurrency", "ops/s", "p50 ms", "p99 ms", "errors"]
    rows: list[list[str]] = []
    for r in results:
        lat = r.latency_ms
        rows.append(
            [
                r.target,
                r.operation,
                str(r.concurrency),
                f"{r.ops_per_s:,.1f}",
                f"{lat['p50']:.2f}" if lat else "-",
                f"{lat['p99']:.2f}" if lat else "-",
                str(r.errors),
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    left = {0, 1}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(widths[i]) if i in left else c.rjust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(row) for row in rows)
    return "\n".join(out)


# --------------------------------------------------------------------------- CLI
def _csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _parse_operations(values: list[str] | None) -> list[str]:
    if not values:
        return list(OPERATIONS)
    by_lower = {op.lower(): op for op in OPERATIONS + EXTRA_OPERATIONS}
    chosen: list[str] = []
    for value in values:
        for item in _csv_list(value):
            op = by_lower.get(item.lower())
            if op is None:
                known = ", ".join(OPERATIONS + EXTRA_OPERATIONS)
                raise ValueError(f"unknown operation {item!r} (choose from {known})")
            if op not in chosen:
                chosen.append(op)
    return chosen


def _parse_concurrency(text: str) -> list[int]:
    levels = [int(item) for item in _csv_list(text)]
    if not levels or any(level < 1 for level in levels):
        raise ValueError(f"concurrency must be a comma-separated list of integers >= 1: {text!r}")
    return levels


def _parse_targets(args: argparse.Namespace) -> list[Target]:
    targets: list[Target] = []
    for spec in args.target or []:
        name, sep, url = spec.partition("=")
        if not sep or not name.strip() or not url.strip():
            raise ValueError(f"--target wants NAME=URL, got {spec!r}")
        targets.append(Target.parse(name.strip(), url.strip()))
    if args.endpoint or not targets:
        url = args.endpoint or DEFAULT_ENDPOINT
        targets.insert(0, Target.parse(urlsplit(url).netloc or url, url))
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise ValueError(f"target names must be unique: {names}")
    return targets


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options to ``parser`` (used by ``python -m tools.bench``)."""
    env = os.environ.get
    parser.add_argument(
        "--endpoint",
        metavar="URL",
        help=f"KMS endpoint to measure (default {DEFAULT_ENDPOINT} when no --target is given)",
    )
    parser.add_argument(
        "--target",
        action="append",
        metavar="NAME=URL",
        help="an endpoint to measure under a name; repeat to compare endpoints side by side",
    )
    parser.add_argument(
        "--operations",
        action="append",
        metavar="OPS",
        help=f"comma-separated operations to run (default {','.join(OPERATIONS)})",
    )
    parser.add_argument(
        "--concurrency",
        default="1,16,64",
        metavar="LIST",
        help="comma-separated concurrency levels, one connection each (default 1,16,64)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="measured seconds per cell (default 10; 60 with --suite)",
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="unmeasured warm-up seconds per cell (default 1)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="load-generating processes; connections are spread over them (default 1)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="per-request timeout in seconds (default 30)"
    )
    parser.add_argument(
        "--access-key-id",
        default=env("AWS_ACCESS_KEY_ID", "test"),
        help="SigV4 access key id (default $AWS_ACCESS_KEY_ID or 'test')",
    )
    parser.add_argument(
        "--secret-access-key",
        default=env("AWS_SECRET_ACCESS_KEY", "test"),
        help="SigV4 secret access key (default $AWS_SECRET_ACCESS_KEY or 'test')",
    )
    parser.add_argument(
        "--session-token",
        default=env("AWS_SESSION_TOKEN") or None,
        help="optional session token, sent and signed as X-Amz-Security-Token "
        "(default $AWS_SESSION_TOKEN)",
    )
    parser.add_argument(
        "--region",
        default=env("AWS_REGION") or env("AWS_DEFAULT_REGION") or "us-east-1",
        help="SigV4 region (default $AWS_REGION, $AWS_DEFAULT_REGION or us-east-1)",
    )
    parser.add_argument(
        "--key-id", help="use this existing symmetric key instead of creating one per target"
    )
    parser.add_argument(
        "--keep-key",
        action="store_true",
        help="do not schedule deletion of the keys the benchmark created",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the raw results as JSON")
    parser.add_argument(
        "--json-samples",
        action="store_true",
        help="include every latency sample (microseconds) in the --json output",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="do not verify TLS certificates (https only)"
    )
    parser.add_argument("--no-uvloop", action="store_true", help="use the stock asyncio event loop")
    parser.add_argument(
        "--check-signer",
        action="store_true",
        help="only compare the built-in SigV4 signer with botocore's and exit",
    )


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; 0 when every cell ran without errors, 1 otherwise, 2 on bad usage."""
    if args.check_signer:
        problems = check_signer_against_botocore()
        for problem in problems:
            print(f"MISMATCH {problem}", file=sys.stderr)
        print("signer matches botocore" if not problems else "signer differs from botocore")
        return 1 if problems else 0
    if args.duration is None:
        args.duration = DEFAULT_DURATION
    try:
        targets = _parse_targets(args)
        operations = _parse_operations(args.operations)
        levels = _parse_concurrency(args.concurrency)
        if args.duration <= 0 or args.warmup < 0 or args.timeout <= 0 or args.processes < 1:
            raise ValueError(
                "--duration and --timeout must be > 0, --warmup >= 0, --processes >= 1"
            )
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    creds = Credentials(
        args.access_key_id, args.secret_access_key, args.region, args.session_token or None
    )
    use_uvloop = not args.no_uvloop
    log = sys.stderr

    states = [_TargetState(t) for t in targets]

    async def setup_all() -> None:
        await asyncio.gather(
            *(_setup_target(s, creds, args.key_id, args.insecure, args.timeout) for s in states)
        )

    _run(setup_all, use_uvloop)
    for s in states:
        if s.error:
            print(f"bench: {s.target.name} ({s.target.url}): {s.error}", file=log)
        else:
            print(f"bench: {s.target.name}: key {s.key_id}", file=log)
    ready = [s for s in states if not s.error]

    cells = [(op, c, s) for op in operations for c in levels for s in ready]
    results: list[CellResult] = []
    audit_lag: dict[str, dict[str, float] | None] = {}
    pool: ProcessPoolExecutor | None = None
    if args.processes > 1 and cells:
        pool = ProcessPoolExecutor(args.processes, mp_context=multiprocessing.get_context("spawn"))
        list(pool.map(_noop, [0.2] * args.processes))  # start every worker up front
    started = time.time()
    try:
        for index, (op, conc, state) in enumerate(cells, 1):
            procs = min(args.processes, conc)
            shares = [conc // procs + (1 if i < conc % procs else 0) for i in range(procs)]
            start_at = time.time() + 0.3 if pool is not None else None
            specs = [
                _CellSpec(
                    state.target,
                    creds,
                    op,
                    state.bodies[op],
                    share,
                    args.warmup,
                    args.duration,
                    args.timeout,
                    args.insecure,
                    use_uvloop,
                    start_at,
                )
                for share in shares
            ]
            with LagSampler(state.target.url) as lag:  # the audit trail's lag, from /metrics
                raws = [_run_cell(specs[0])] if pool is None else list(pool.map(_run_cell, specs))
            result = _merge(state.target, op, conc, args.duration, raws, args.json_samples)
            results.append(result)
            audit_lag[f"{state.target.name} {op} c={conc}"] = lag.summary()
            print(
                f"bench: [{index}/{len(cells)}] {state.target.name} {op} c={conc}: "
                f"{result.ops_per_s:,.1f} ops/s, {result.errors} errors, "
                f"client cpu {result.client_cpu_pct:.0f}%{lag.describe()}",
                file=log,
            )
    except KeyboardInterrupt:
        print("bench: interrupted; reporting what was measured", file=log)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    cleanup_errors: dict[str, str] = {}
    to_clean = [s for s in ready if s.created_key and not args.keep_key]
    if to_clean:

        async def cleanup_all() -> list[str | None]:
            return await asyncio.gather(
                *(_cleanup_target(s, creds, args.insecure, args.timeout) for s in to_clean)
            )

        for s, err in zip(to_clean, _run(cleanup_all, use_uvloop), strict=True):
            if err:
                cleanup_errors[s.target.name] = err
                print(f"bench: {s.target.name}: could not schedule key deletion: {err}", file=log)

    if results:
        print(_format_table(results))
    shown: set[tuple[str, str, str]] = set()  # print each kind's first body once per target/op
    for r in results:
        for kind, entry in r.error_kinds.items():
            key = (r.target, r.operation, kind)
            first = "" if key in shown else f"; first: {entry['first']}"
            shown.add(key)
            where = f"{r.target} {r.operation} c={r.concurrency}"
            print(f"errors {where}: {entry['count']} x {kind}{first}")

    if args.json:
        document = {
            "tool": "python -m tools.bench",
            "started_at": started,
            "python": platform.python_version(),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "settings": {
                "operations": operations,
                "concurrency": levels,
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "processes": args.processes,
                "timeout_s": args.timeout,
                "region": args.region,
                "uvloop": use_uvloop,
                "plaintext_bytes": len(PLAINTEXT),
            },
            "targets": [
                {
                    "name": s.target.name,
                    "url": s.target.url,
                    "key_id": s.key_id,
                    "error": s.error,
                    "cleanup_error": cleanup_errors.get(s.target.name),
                }
                for s in states
            ],
            "results": [
                {k: v for k, v in asdict(r).items() if k != "samples_us" or v is not None}
                for r in results
            ],
            "audit_lag": audit_lag,
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=2)
            fh.write("\n")
        print(f"bench: wrote {args.json}", file=log)

    failed = any(s.error for s in states) or len(results) < len(cells)
    failed = failed or any(r.errors or not r.ok for r in results)
    return 1 if failed else 0


# --------------------------------------------------------------------------- programmatic use
@dataclass(frozen=True, slots=True)
class Load:
    """One stream of load in a cell: ``connections`` connections sending ``operation``.

    ``bodies`` holds one request body, or several taken in turn (e.g. one per key).
    """

    target: Target
    operation: str
    bodies: tuple[bytes, ...]
    connections: int


def setup_key(
    target: Target, creds: Credentials, key_id: str | None = None, *, timeout: float = 30.0
) -> tuple[str, dict[str, bytes]]:
    """Create a key (unless ``key_id`` is given), check a round trip; return it and the
    request body of each operation (Encrypt, Decrypt, GenerateDataKey, Noop) on it."""
    state = _TargetState(target)
    _run(lambda: _setup_target(state, creds, key_id, False, timeout), True)
    if state.error:
        raise RuntimeError(f"{target.name} ({target.url}): {state.error}")
    return state.key_id, state.bodies


def operation_bodies(key_id: str, ciphertext_b64: str = "") -> dict[str, bytes]:
    """The request body of each benchmark operation on ``key_id``."""
    return _operation_bodies(key_id, ciphertext_b64)


def call(
    target: Target,
    creds: Credentials,
    operation: str,
    payload: dict[str, Any],
    *,
    timeout: float = 30.0,
) -> Any:
    """Call one KMS operation and return its decoded answer; RuntimeError on failure."""

    async def once() -> Any:
        client = _OneShotClient(target, creds, False)
        try:
            return await client.call(operation, payload, timeout)
        finally:
            client.close()

    try:
        return _run(once, True)
    except (_SetupError, TimeoutError, OSError) as exc:
        raise RuntimeError(f"{target.name} {operation}: {type(exc).__name__}: {exc}") from None


def run_loads(
    loads: Sequence[Load],
    creds: Credentials,
    *,
    duration: float,
    warmup: float = 1.0,
    timeout: float = 30.0,
    processes: int = 1,
    pool: ProcessPoolExecutor | None = None,
    use_uvloop: bool = True,
) -> list[CellResult]:
    """Run every load at once (aligned start) for ``warmup`` + ``duration`` seconds.

    Each load's connections are spread over up to ``processes`` processes of ``pool``
    (which needs at least that many workers per load for them all to run at once);
    without a pool a single load runs in this process. One result per load.
    """
    if pool is None and len(loads) != 1:
        raise ValueError("several loads at once need a process pool")
    start_at = time.time() + 0.5 if pool is not None else None
    specs: list[_CellSpec] = []
    owners: list[int] = []
    for index, load in enumerate(loads):
        procs = max(1, min(processes, load.connections))
        shares = [
            load.connections // procs + (1 if i < load.connections % procs else 0)
            for i in range(procs)
        ]
        for i, share in enumerate(shares):
            # Each process walks its own slice of the bodies, so none is sent twice early.
            bodies = load.bodies[i::procs] if len(load.bodies) > 1 else ()
            specs.append(
                _CellSpec(
                    target=load.target,
                    creds=creds,
                    operation=load.operation,
                    body=load.bodies[0],
                    connections=share,
                    warmup=warmup,
                    duration=duration,
                    timeout=timeout,
                    insecure=False,
                    use_uvloop=use_uvloop,
                    start_at=start_at,
                    bodies=bodies,
                )
            )
            owners.append(index)
    raws = [_run_cell(specs[0])] if pool is None else list(pool.map(_run_cell, specs))
    results: list[CellResult] = []
    for index, load in enumerate(loads):
        mine = [raw for raw, owner in zip(raws, owners, strict=True) if owner == index]
        results.append(_merge(load.target, load.operation, load.connections, duration, mine, False))
    return results


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of load-generating processes, all started up front."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    list(pool.map(_noop, [0.2] * workers))
    return pool


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.bench",
        description="Benchmark AWS KMS endpoints (KeyLedger, moto, ...) with signed requests.",
    )
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(_cli())
