"""The time windows that routes take: `to` after `from`, and not too long."""

from __future__ import annotations

from datetime import datetime, timedelta

from torch.errors import InvalidInput


def check_window(start: datetime, end: datetime, days: float) -> None:
    if end <= start:
        raise InvalidInput("to must be after from", "to")
    if end - start > timedelta(days=days):
        raise InvalidInput(f"the window may be at most {days:g} days long", "to")
