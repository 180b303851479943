"""What the pages and exports say: totals over a date range, CSV, the daily summary line
and the abuse signal, from the records (:mod:`oggmhub.usage.store`)."""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime, timedelta, timezone

from oggmhub.usage.units import UNITS

MAX_RANGE_DAYS = 3660  # ten years: a longer range is a typo
COLUMNS = ("records", "hours", *UNITS, "peak_gib")


class RangeError(ValueError):
    """A date range that is malformed, inverted or absurd (its message says which)."""


def parse_range(start, end, now=None):
    """(begin, end) epoch seconds from ``YYYY-MM-DD`` dates (``end`` inclusive); defaults:
    the last 30 days. :class:`RangeError` naming what is wrong."""
    now = time.time() if now is None else now
    today = datetime.fromtimestamp(now, timezone.utc).date()

    def day(value, name, fallback):
        if value in (None, ""):
            return fallback
        try:
            return datetime.strptime(value, "%Y-%m-%d").date()
        except (TypeError, ValueError):
            raise RangeError(f"{name}: {str(value)[:40]!r} is not a date; use YYYY-MM-DD, e.g. {today}") from None

    first = day(start, "start", today - timedelta(days=29))
    last = day(end, "end", today)
    if last < first:
        raise RangeError(f"the range is inverted: end {last} is before start {first}")
    if (last - first).days > MAX_RANGE_DAYS or first.year < 2000:
        raise RangeError(f"the range {first} to {last} is absurd: at most {MAX_RANGE_DAYS} days, from the year 2000")
    begin = datetime(first.year, first.month, first.day, tzinfo=timezone.utc)
    stop = datetime(last.year, last.month, last.day, tzinfo=timezone.utc) + timedelta(days=1)
    return begin.timestamp(), stop.timestamp()


def calendar(now, what):
    """(begin, end) of this week (from Monday) or this month, UTC."""
    today = datetime.fromtimestamp(now, timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    begin = today - timedelta(days=today.weekday()) if what == "week" else today.replace(day=1)
    return begin.timestamp(), now


def sums(rows):
    """The totals of ``rows`` (from :meth:`~oggmhub.usage.store.UsageStore.totals`)."""
    out = {k: sum(r[k] for r in rows) for k in COLUMNS if k != "peak_gib"}
    out["peak_gib"] = max((r["peak_gib"] for r in rows), default=0.0)
    return out


def to_csv(sections):
    """CSV of ``{section: (by, rows)}``: one line per row, ``section,key,<columns>``."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["section", "key", *COLUMNS])
    for section, (by, rows) in sections.items():
        for row in rows:
            writer.writerow([section, row[by], *(round(row[c], 6) if isinstance(row[c], float) else row[c]
                                                 for c in COLUMNS)])
    return buf.getvalue()


def abuse(store, hours, now=None):
    """Running sessions busy at their CPU limit for ``hours`` with no user activity for as long."""
    now = time.time() if now is None else now
    limit = now - hours * 3600
    found = []
    for r in store.records(open_only=True, now=now):
        if r["busy_since"] and r["busy_since"] <= limit and (r["last_activity"] or r["start"]) <= limit:
            found.append({"id": r["id"], "user": r["user"], "environment": r["environment"],
                          "busy_hours": round((now - r["busy_since"]) / 3600, 2),
                          "idle_hours": round((now - (r["last_activity"] or r["start"])) / 3600, 2),
                          "cpu_limit": r["cpu_limit"]})
    return found


def summary_line(store, day_begin):
    """One line: what was used on the UTC day starting at ``day_begin``."""
    rows = store.totals(day_begin, day_begin + 86400, by="user", now=day_begin + 86400)
    total = sums(rows)
    day = datetime.fromtimestamp(day_begin, timezone.utc).date()
    return (f"usage on {day}: {len(rows)} user(s), {total['records']} record(s), {total['core-hours']:.2f} core-hours, "
            f"{total['gib-hours']:.2f} GiB-hours, {total['gpu-hours']:.2f} GPU-hours")


def daily_summary(store, log, now=None):
    """Log the summary line of each whole day since the last one logged (once per day,
    whichever process notices first; the day is kept with the records)."""
    now = time.time() if now is None else now
    today = datetime.fromtimestamp(now, timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    last = store.meta("summary_day")
    if last is None:
        store.meta("summary_day", today)
        return
    day = float(last)
    if day >= today:
        return
    store.meta("summary_day", today)
    for begin in range(int(day), int(today), 86400)[-7:]:  # a long outage: the last week's lines
        log.info("%s", summary_line(store, begin))
