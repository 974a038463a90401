"""Request ids: random (version 4) UUIDs as text, as AWS's x-amzn-RequestId.

``str(uuid.uuid4())`` costs a system call for 16 random bytes and a UUID object per
request; here 256 ids are made at once from one 4 KiB read of random bytes (the version
and variant bits set by two ``translate`` calls, the text cut by one ``itemgetter``), and a
request takes one with ``list.pop``, atomic under the GIL: no two threads get the same id,
and no lock. A request id is published in the answer, so it needs to be unique and
unpredictable enough not to collide, not secret.
"""

from __future__ import annotations

import os
from operator import itemgetter

_BATCH_IDS = 256  # ids per read of random bytes
_VERSION_4 = bytes((byte & 0x0F) | 0x40 for byte in range(256))  # byte 6: 0100xxxx
_VARIANT = bytes((byte & 0x3F) | 0x80 for byte in range(256))  # byte 8: RFC 9562's 10xxxxxx
# The 8-4-4-4-12 hex digit groups of every id in a batch's hex text, in order.
_GROUPS = itemgetter(
    *(
        slice(start + begin, start + end)
        for start in range(0, 32 * _BATCH_IDS, 32)
        for begin, end in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))
    )
)

_ready: list[str] = []  # made, not yet given out


def new_request_id() -> str:
    """A new random UUID (version 4, RFC 9562) in its 36-character text form."""
    try:
        return _ready.pop()
    except IndexError:
        made = _made_ids()
        first = made.pop()
        _ready.extend(made)
        return first


def _made_ids() -> list[str]:
    random = bytearray(os.urandom(16 * _BATCH_IDS))
    random[6::16] = random[6::16].translate(_VERSION_4)
    random[8::16] = random[8::16].translate(_VARIANT)
    groups = iter(_GROUPS(random.hex()))
    return list(map("-".join, zip(groups, groups, groups, groups, groups, strict=True)))


# A forked child must not give out the ids its parent made and has not given out yet.
os.register_at_fork(after_in_child=_ready.clear)
