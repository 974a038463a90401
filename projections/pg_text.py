"""PostgreSQL text cannot hold NUL, nor jsonb ``\\u0000``; JSON strings (and so AWS
requests) can.

The one NUL-safe path of every value written to a text, json or jsonb column:
`without_nul` for text (the parameters of every query through psycopg's str dumpers,
which app/infrastructure/postgres/nul_safe_text.py installs, and the rows the audit projection
COPYs, which no dumper sees) and `json_text` for JSON. The ledger keeps the exact value.
"""

from __future__ import annotations

from typing import Any

import orjson

REPLACEMENT = "\ufffd"
# How orjson writes a NUL in a string. A literal backslash before "u0000" is written
# "\\u0000", which also contains it: such values only take the slow path, still correct.
_ESCAPED_NUL = b"\\u0000"


def without_nul(text: str) -> str:
    """``text`` as a text column can hold it: U+FFFD in place of each NUL."""
    return text.replace("\x00", REPLACEMENT) if "\x00" in text else text


def json_text(value: Any) -> str:
    """``value`` as JSON text a jsonb column accepts: U+FFFD in place of each NUL in its
    strings and object keys. Never a replace on the JSON text itself, which would also
    rewrite an escaped backslash followed by ``u0000``."""
    encoded = orjson.dumps(value)
    if _ESCAPED_NUL in encoded:
        encoded = orjson.dumps(_strings_without_nul(value))
    return encoded.decode()


def _strings_without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return without_nul(value)
    if isinstance(value, dict):
        return {_key_without_nul(k): _strings_without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strings_without_nul(item) for item in value]
    return value


def _key_without_nul(key: Any) -> Any:
    return without_nul(key) if isinstance(key, str) else key
