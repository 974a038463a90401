"""Request ids: random (version 4) UUIDs as text, as AWS's x-amzn-RequestId.

``str(uuid.uuid4())`` costs a system call for 16 random bytes and a UUID object per
request; here the random bytes come from a buffer refilled 4 KiB at a time and the text is
built straight from their hex. A request id is published in the answer, so it needs to be
unique and unpredictable enough not to collide, not secret.
"""

from __future__ import annotations

import os
import threading

_BATCH_IDS = 256  # ids per refill of the buffer
_VARIANT = "89ab89ab89ab89ab"  # RFC 9562's variant bits (10xx) over a hex digit's top bits


class _RandomHex(threading.local):
    """Each thread its own buffer: no lock on the event loop's path."""

    def __init__(self) -> None:
        self.text = ""
        self.offset = 0
        self.pid = os.getpid()


_buffer = _RandomHex()


def new_request_id() -> str:
    """A new random UUID (version 4, RFC 9562) in its 36-character text form."""
    buffer = _buffer
    if buffer.offset >= len(buffer.text) or buffer.pid != os.getpid():
        buffer.text = os.urandom(16 * _BATCH_IDS).hex()
        buffer.offset = 0
        buffer.pid = os.getpid()  # a forked child must not repeat its parent's ids
    h = buffer.text[buffer.offset : buffer.offset + 32]
    buffer.offset += 32
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16)]}{h[17:20]}-{h[20:]}"
