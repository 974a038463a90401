"""PostgreSQL text cannot hold NUL; JSON strings (and so AWS requests) can.

Every value written to a text column goes through `without_nul`: the parameters of every
query through psycopg's str dumpers (app/nul_safe_text.py installs them), and the rows
the audit projection COPYs, which no dumper sees. The ledger keeps the exact value.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


def without_nul(text: str) -> str:
    """``text`` as a text column can hold it: U+FFFD in place of each NUL."""
    return text.replace("\x00", REPLACEMENT) if "\x00" in text else text
