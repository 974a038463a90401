"""The service clock. Tests move it to make rotation and deletion windows pass."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class Clock:
    """Wall-clock time in UTC, optionally shifted by an offset that tests may change."""

    def __init__(self, *, adjustable: bool = False) -> None:
        self._offset = timedelta(0)
        self._adjustable = adjustable
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def reset(self) -> datetime:
        """Back to wall-clock time (emulator mode's reset: nothing recorded is newer)."""
        if not self._adjustable:
            raise PermissionError("this clock is not adjustable (set KEYLEDGER_TEST_CLOCK)")
        with self._lock:
            self._offset = timedelta(0)
        return self.now()

    def advance(self, delta: timedelta) -> datetime:
        if not self._adjustable:
            raise PermissionError("this clock is not adjustable (set KEYLEDGER_TEST_CLOCK)")
        with self._lock:
            self._offset += delta
        return self.now()
