"""The HTTP protocol's coalescing transport: the writes of one event-loop step (a
response's headers, then its body) leave as one send, in order, and nothing is lost
when the connection closes."""

from __future__ import annotations

import asyncio

from app.entrypoints.server.http_protocol import CoalescingTransport


class RecordingTransport(asyncio.Transport):
    """Stands for the socket: records what would be sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def test_the_writes_of_one_step_leave_as_one_send_at_its_end() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        socket = RecordingTransport()
        transport = CoalescingTransport(socket, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"{}")
        during_the_step = list(socket.sent)
        await asyncio.sleep(0)
        return during_the_step, socket.sent

    during_the_step, after_it = asyncio.run(scenario())
    assert during_the_step == []
    assert after_it == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]


def test_later_steps_send_their_own_writes_in_order() -> None:
    async def scenario() -> list[bytes]:
        socket = RecordingTransport()
        transport = CoalescingTransport(socket, asyncio.get_running_loop())
        for part in (b"first", b"second"):
            transport.write(part)
            await asyncio.sleep(0)
        return socket.sent

    assert asyncio.run(scenario()) == [b"first", b"second"]


def test_closing_sends_what_is_pending_first() -> None:
    async def scenario() -> RecordingTransport:
        socket = RecordingTransport()
        transport = CoalescingTransport(socket, asyncio.get_running_loop())
        transport.write(b"last answer")
        transport.close()
        await asyncio.sleep(0)
        return socket

    socket = asyncio.run(scenario())
    assert socket.sent == [b"last answer"] and socket.closed


def test_a_connection_closed_meanwhile_drops_the_pending_writes() -> None:
    async def scenario() -> list[bytes]:
        socket = RecordingTransport()
        transport = CoalescingTransport(socket, asyncio.get_running_loop())
        transport.write(b"too late")
        socket.closed = True  # the peer went away
        await asyncio.sleep(0)
        return socket.sent

    assert asyncio.run(scenario()) == []
