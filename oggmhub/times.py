"""Times as oggmhub stores them: ISO-8601, in UTC (a foundation module: no feature imports).

:func:`parse_time` is the one reading of a time the catalog and the cohorts share; a time
it cannot read is a :class:`TimeError` naming the field and what is allowed.
"""

from __future__ import annotations

from datetime import datetime, timezone


class TimeError(ValueError):
    """A time that cannot be read; the message names the field and the allowed form."""


def parse_time(value, field_name):
    """An ISO-8601 time as an aware UTC datetime; times without an offset are UTC."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value or "").strip()
        if not text:
            raise TimeError(f"{field_name}: missing; give an ISO-8601 time such as 2026-06-01T08:00Z")
        try:
            moment = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
        except ValueError:
            raise TimeError(
                f"{field_name}: {text!r} is not an ISO-8601 time; use e.g. 2026-06-01T08:00Z "
                "(UTC) or 2026-06-01T10:00+02:00"
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).replace(microsecond=0)
