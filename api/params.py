"""The values that routes take, checked before any route uses them: times within the
service's years, ids the database can hold, text and JSON without the NUL character (which
PostgreSQL cannot store), and windows not too long."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Path
from pydantic import AfterValidator, AwareDatetime
from pydantic_core import PydanticCustomError

from torch.errors import InvalidInput
from torch.fixes import SERVICE_TIMES, in_service_times

INT64 = 2**63 - 1  # the largest bigint: every id is one


def _in_service(t: datetime) -> datetime:
    if not in_service_times(t):
        raise PydanticCustomError("service_times", f"must lie {SERVICE_TIMES}")
    return t


def _no_nul(value: Any) -> Any:
    if _holds_nul(value):
        raise PydanticCustomError("nul", "must not contain the NUL character (U+0000)")
    return value


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


# An RFC 3339 time with an offset, in the years the service covers.
When = Annotated[AwareDatetime, AfterValidator(_in_service)]
# Text, and JSON objects (GeoJSON, schedules), that the database can store.
Text = Annotated[str, AfterValidator(_no_nul)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_no_nul)]
# A subject's or a zone's id in a route's path.
Id = Annotated[int, Path(ge=1, le=INT64)]


def check_window(start: datetime, end: datetime, days: float) -> None:
    if end <= start:
        raise InvalidInput("to must be after from", "to")
    if end - start > timedelta(days=days):
        raise InvalidInput(f"the window may be at most {days:g} days long", "to")
