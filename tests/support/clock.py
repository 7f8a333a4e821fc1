"""A clock for tests: fixed until told to move."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class FakeClock:
    """A `Clock` that only moves when the test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
