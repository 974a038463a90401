"""The chaos harness's HTTP client reads an answer the server gave before the whole body
was sent (a 413 for an oversized body, then a closed connection), instead of sending the
call again: a retry is a second call, whose record the hostile-text check counted as one
"of no call it made" (seen under load, when the server answered before the client had
written its body)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tools.chaos.clients import Connection

BODY = b"Z" * (32 * 1024 * 1024)  # far more than loopback's socket buffers hold
ANSWER = (
    b"HTTP/1.1 413 Request Entity Too Large\r\n"
    b"Content-Type: application/x-amz-json-1.1\r\n"
    b"x-amzn-RequestId: early-answer\r\n"
    b"Content-Length: 2\r\n"
    b"Connection: close\r\n\r\n{}"
)


class EarlyAnswerServer:
    """Answers each connection's request after its head, without reading its body, and
    closes (with the body unread, the kernel resets the connection)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    head += chunk
                conn.sendall(ANSWER)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def early_answer_server() -> Iterator[EarlyAnswerServer]:
    server = EarlyAnswerServer()
    yield server
    server.close()


def test_an_answer_given_before_the_body_was_sent_is_read_not_retried(
    early_answer_server: EarlyAnswerServer,
) -> None:
    connection = Connection("127.0.0.1", early_answer_server.port, 10.0, retry_stale=True)
    reply = connection.send("POST", "/", BODY, {"Content-Type": "application/x-amz-json-1.1"})
    connection.close()

    assert reply.status == 413
    assert reply.request_id == "early-answer"
    assert early_answer_server.connections == 1
