"""Signed HTTP clients: the AWS JSON 1.1 protocol (``POST /``) and the REST API (``/v1``).

Requests are serialized with botocore's own service model (so every member has the shape
AWS SDKs give it) and signed with botocore's ``SigV4Auth``; they travel over one
keep-alive ``http.client`` connection per client, with a timeout on every socket
operation, so no call can wait forever. Every call returns a `Reply`, never raises for
transport failures: status 0 is a connection failure, -1 a timeout.
"""

from __future__ import annotations

import functools
import http.client
import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from botocore.model import ServiceModel
from botocore.serialize import create_serializer

from tools.bench.bench import Credentials

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
KMS_TARGET_PREFIX = "TrentService."
USER_AGENT = "keyledger-chaos/1"
CONNECTION_FAILED = 0
TIMED_OUT = -1
# Failures of a reused keep-alive connection that the server had already closed: the
# request never reached it, so sending it again on a fresh connection is safe.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


@functools.cache
def kms_model() -> ServiceModel:
    """botocore's model of AWS KMS, the one the service validates requests against."""
    return botocore.session.get_session().get_service_model("kms")


@dataclass(frozen=True, slots=True)
class Reply:
    """One request's outcome. ``sent`` and ``done`` are ``time.monotonic()`` readings."""

    status: int  # the HTTP status, CONNECTION_FAILED or TIMED_OUT
    body: bytes
    request_id: str
    sent: float
    done: float
    error: str = ""  # the transport failure, if any

    @property
    def elapsed(self) -> float:
        return self.done - self.sent

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The decoded body, or None when it is not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def error_type(self) -> str:
        """The AWS error code (``__type``), or what went wrong on the wire."""
        if self.status <= 0:
            return self.error or ("timeout" if self.status == TIMED_OUT else "connection")
        document = self.json()
        if isinstance(document, dict) and isinstance(document.get("__type"), str):
            return str(document["__type"])
        return "" if self.ok else f"HTTP {self.status}"

    def describe(self, limit: int = 300) -> str:
        text = self.body[:limit].decode("utf-8", "replace")
        return f"{self.status} {text}" if self.status > 0 else f"{self.status} {self.error}"


def is_aws_error_shape(reply: Reply, *, aws_json: bool = False) -> bool:
    """An error answer as AWS gives it: a JSON object with a ``__type`` and a ``message``.
    Over AWS JSON the message has text or is left out, as AWS leaves it out of
    InvalidCiphertextException and a few others (an empty text is not AWS's answer)."""
    document = reply.json()
    if not isinstance(document, dict):
        return False
    message = document.get("message", document.get("Message"))
    if aws_json:
        message_ok = message is None or (isinstance(message, str) and bool(message))
    else:
        message_ok = isinstance(message, str)
    return isinstance(document.get("__type"), str) and bool(document["__type"]) and message_ok


class Connection:
    """One keep-alive HTTP/1.1 connection, reopened after any failure."""

    def __init__(self, host: str, port: int, timeout: float, *, retry_stale: bool) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.retry_stale = retry_stale
        self._conn: http.client.HTTPConnection | None = None
        self._used = False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        sent = time.monotonic()
        attempts = 2 if self.retry_stale else 1
        for attempt in range(attempts):
            reused = self._conn is not None and self._used
            try:
                return self._send_once(method, path, body, headers, sent)
            except _STALE as error:
                self.close()
                if reused and attempt + 1 < attempts:
                    continue  # the server closed the idle connection: the request never ran
                return Reply(CONNECTION_FAILED, b"", "", sent, time.monotonic(), repr(error))
            except TimeoutError as error:
                self.close()
                return Reply(TIMED_OUT, b"", "", sent, time.monotonic(), repr(error))
            except (OSError, http.client.HTTPException) as error:
                self.close()
                return Reply(CONNECTION_FAILED, b"", "", sent, time.monotonic(), repr(error))
        raise AssertionError("unreachable")

    def _send_once(
        self, method: str, path: str, body: bytes, headers: dict[str, str], sent: float
    ) -> Reply:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._used = False
        try:
            self._conn.request(method, path, body=body or None, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            # The server may answer before reading the whole body (a 413 for an oversized
            # one) and close: read that answer, as urllib3 does. Retrying instead would
            # send the call twice (two records), or lose the answer.
            try:
                response = self._conn.getresponse()
            except (OSError, http.client.HTTPException):
                pass
            else:
                return self._finish(response, sent)
            raise
        return self._finish(self._conn.getresponse(), sent)

    def _finish(self, response: http.client.HTTPResponse, sent: float) -> Reply:
        data = response.read()
        self._used = True
        request_id = response.getheader("x-amzn-requestid") or ""
        if response.will_close:
            self.close()
        return Reply(response.status, data, request_id, sent, time.monotonic())


class Signer:
    """SigV4 with botocore's ``SigV4Auth``: signs exactly the headers it is given (and Host)."""

    def __init__(self, creds: Credentials, service: str = "kms") -> None:
        boto = BotoCredentials(creds.access_key_id, creds.secret_access_key, creds.session_token)
        self._auth = SigV4Auth(boto, service, creds.region)

    def sign(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        self._auth.add_auth(request)
        return dict(request.headers.items())


class _Endpoint:
    def __init__(self, endpoint: str, timeout: float, retry_stale: bool) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"{endpoint!r}: want http://host:port")
        self.base = f"http://{parts.hostname}:{parts.port}"
        self.connection = Connection(parts.hostname, parts.port, timeout, retry_stale=retry_stale)

    def close(self) -> None:
        self.connection.close()


class KmsClient(_Endpoint):
    """AWS KMS over the JSON 1.1 protocol, one request at a time."""

    def __init__(
        self, endpoint: str, creds: Credentials, *, timeout: float = 10.0, retry_stale: bool = True
    ) -> None:
        super().__init__(endpoint, timeout, retry_stale)
        self.creds = creds
        self._signer = Signer(creds)
        self._serializer = create_serializer("json", include_validation=False)

    def body_of(self, operation: str, params: dict[str, Any]) -> bytes:
        """The request body botocore's model gives ``params`` (bytes become base64, ...)."""
        request = self._serializer.serialize_to_request(
            params, kms_model().operation_model(operation)
        )
        body = request["body"]
        return body if isinstance(body, bytes) else str(body).encode()

    def call(self, operation: str, params: dict[str, Any]) -> Reply:
        return self.send(KMS_TARGET_PREFIX + operation, self.body_of(operation, params))

    def send(self, target: str, body: bytes, *, signer: Signer | None = None) -> Reply:
        """POST ``body`` as is (any bytes) under ``X-Amz-Target: target``, signed."""
        headers = {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": target}
        signed = (signer or self._signer).sign("POST", self.base + "/", body, headers)
        signed["User-Agent"] = USER_AGENT
        return self.connection.send("POST", "/", body, signed)


class RestClient(_Endpoint):
    """The REST API, signed as the AWS SDKs sign KMS requests."""

    def __init__(
        self, endpoint: str, creds: Credentials, *, timeout: float = 10.0, retry_stale: bool = True
    ) -> None:
        super().__init__(endpoint, timeout, retry_stale)
        self._signer = Signer(creds)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        json_body: Any = None,
        signed: bool = True,
    ) -> Reply:
        target = path + ("?" + urlencode(query) if query else "")
        body = b"" if json_body is None else json.dumps(json_body).encode()
        headers = {"Content-Type": "application/json"} if body else {}
        if signed:
            headers = self._signer.sign(method, self.base + target, body, headers)
        headers["User-Agent"] = USER_AGENT
        return self.connection.send(method, target, body, headers)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
