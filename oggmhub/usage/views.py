"""What the usage pages and their JSON/CSV exports show, as plain data (no handler code)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from oggmhub.usage import budgets as budget_rules
from oggmhub.usage.reports import abuse, calendar, sums, to_csv
from oggmhub.usage.units import UNIT_TEXT


def _day(epoch):
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d")


def user_view(store, catalog, username, cohort_names=(), now=None):
    """A user's own usage: this week, this month (by environment, by project), budgets, running."""
    now = time.time() if now is None else now
    week, month = calendar(now, "week"), calendar(now, "month")
    by_env = store.totals(*month, by="environment", user=username, now=now)
    by_project = store.totals(*month, by="project", user=username, now=now)
    budgets = []
    for budget in budget_rules.catalog_budgets(catalog):
        if budget.scope == "project" or budget.applies(username, cohort_names, None):
            if budget.scope == "project" and not any(r["project"] == budget.target for r in by_project):
                continue
            used = budget_rules.used(budget, store, username, now)
            budgets.append({"name": budget.name, "description": budget.describe(), "unit": UNIT_TEXT[budget.unit],
                            "amount": budget.amount, "used": round(used, 4),
                            "resets": _day(budget_rules.window_of(budget.window, now)[1])})
    running = [{"environment": r["environment"], "size": r["size"], "project": r["project"],
                "since": datetime.fromtimestamp(r["start"], timezone.utc).isoformat(timespec="seconds"),
                "cpu_seconds": round(r["cpu_seconds"], 2), "warned": r["warned_at"] is not None}
               for r in store.records(user=username, open_only=True, now=now)]
    return {
        "user": username,
        "week": {"start": _day(week[0]), **sums(store.totals(*week, by="user", user=username, now=now))},
        "month": {"start": _day(month[0]), **sums(store.totals(*month, by="user", user=username, now=now))},
        "by_environment": by_env, "by_project": by_project, "budgets": budgets, "running": running,
    }


def user_csv(view):
    month = {**view["month"], "user": view["user"]}
    week = {**view["week"], "user": view["user"]}
    return to_csv({"week": ("user", [week]), "month": ("user", [month]),
                   "environment": ("environment", view["by_environment"]), "project": ("project", view["by_project"])})


def admin_view(store, begin, end, abuse_hours, now=None):
    """Per-user, per-cohort and per-project totals over [begin, end), and the abuse signal."""
    now = time.time() if now is None else now
    by_user = store.totals(begin, end, by="user", now=now)
    return {
        "start": _day(begin), "end": _day(end - 1),
        "totals": sums(by_user),
        "by_user": by_user,
        "by_cohort": store.totals(begin, end, by="cohort", now=now),
        "by_project": store.totals(begin, end, by="project", now=now),
        "abuse": abuse(store, abuse_hours, now),
    }


def admin_csv(view):
    return to_csv({"user": ("user", view["by_user"]), "cohort": ("cohort", view["by_cohort"]),
                   "project": ("project", view["by_project"])})


def home_notice(store, username, grace_seconds, now=None):
    """The home page's warning for a running server over its budget, or None."""
    now = time.time() if now is None else now
    for r in store.records(user=username, open_only=True, now=now):
        if r["warned_at"] is not None:
            stops = datetime.fromtimestamp(r["warned_at"] + grace_seconds, timezone.utc).strftime("%H:%M UTC")
            return (f"A usage budget of yours is used up: your {r['environment']} server stops at {stops}. "
                    f"See your usage page.")
    return None
