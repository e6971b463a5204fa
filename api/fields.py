"""Types for what a request carries that reaches the database, checked where FastAPI parses it.

A route (or a body model) declares `job_id: Text` or `created_after: Moment | None`, and a value
the database cannot take is a 422 naming the field, before any query: no route repeats the rule.
"""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query
from pydantic import AfterValidator, BeforeValidator

# Deeper pages cost a scan of every row before them; filter (`created_before`) to reach further.
MAX_OFFSET = 1_000_000


def storable(value: str) -> str:
    """`value`, or ValueError if it cannot be stored or searched for as text: PostgreSQL refuses a
    NUL character in any text value (SQLite takes it; the rule is the same on both)."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


def not_a_number(value: object) -> object:
    """ValueError for a number: pydantic would take one as seconds since 1970, where the schema
    (`format: date-time`) promises an ISO 8601 date and time, and an API client should get a 422."""
    try:
        float(str(value))
    except ValueError:
        return value
    raise ValueError("must be an ISO 8601 date and time, such as 2024-05-01T12:00:00Z")


def in_utc(moment: datetime) -> datetime:
    """The moment in UTC: a timestamp without a zone is taken as UTC, the zone of every timestamp
    of the API. Converting here also keeps offsets PostgreSQL refuses (beyond ±15:59) from it."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the years 1 to 9999 once converted to UTC") from None


Text = Annotated[str, AfterValidator(storable)]
Moment = Annotated[datetime, BeforeValidator(not_a_number), AfterValidator(in_utc)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")]
