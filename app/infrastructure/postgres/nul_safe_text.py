"""PostgreSQL text cannot hold NUL; JSON strings (and so AWS requests) can.

psycopg refuses such a string with a DataError wherever it is a query parameter: a key
description, tag or encryption-context key with ``\\u0000`` then made the projection that
writes it fail its batch forever, stalling the audit trail. The ledger stores events as
bytes and keeps the exact value; everything written to or looked up in text columns gets
U+FFFD in place of NUL instead (projections.pg_text.without_nul). JSON adapted by psycopg
(``Json``/``Jsonb`` parameters) goes through projections.pg_text.json_text, the same
replacement in its strings and keys: jsonb refuses ``\\u0000``. Installed once, for every
connection of the process, by `install` (app.infrastructure.postgres.database calls it).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types import string
from psycopg.types.json import set_json_dumps

from projections.pg_text import json_text, without_nul


def _nul_safe(base: type[Any]) -> type[Any]:
    class NulSafe(base):  # type: ignore[misc, valid-type]
        def dump(self, obj: str) -> Any:
            return super().dump(without_nul(obj))

    NulSafe.__name__ = NulSafe.__qualname__ = "NulSafe" + base.__name__
    return NulSafe


# psycopg's own registration order: the last of each format is the default for str.
_DUMPERS = (
    string.StrBinaryDumperName,
    string.StrBinaryDumperVarchar,
    string.StrBinaryDumper,
    string.StrDumperName,
    string.StrDumperVarchar,
    string.StrDumper,
    string.StrDumperUnknown,
)
_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    for dumper in _DUMPERS:
        psycopg.adapters.register_dumper(str, _nul_safe(dumper))
    set_json_dumps(json_text)
    _installed = True
