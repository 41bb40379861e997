"""The times that routes take: within the service's years, `to` after `from`, and a window
not too long."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime
from pydantic_core import PydanticCustomError

from torch.errors import InvalidInput
from torch.fixes import SERVICE_TIMES, in_service_times


def _in_service(t: datetime) -> datetime:
    if not in_service_times(t):
        raise PydanticCustomError("service_times", f"must lie {SERVICE_TIMES}")
    return t


# An RFC 3339 time with an offset, in the years the service covers.
When = Annotated[AwareDatetime, AfterValidator(_in_service)]


def check_window(start: datetime, end: datetime, days: float) -> None:
    if end <= start:
        raise InvalidInput("to must be after from", "to")
    if end - start > timedelta(days=days):
        raise InvalidInput(f"the window may be at most {days:g} days long", "to")
