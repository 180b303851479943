"""Budgets: so many core-hours, GiB-hours or GPU-hours per cohort, project or user over a
calendar window (UTC day, ISO week from Monday, month), from the catalog's ``budgets``::

    budgets:
      workshop-memory: {cohort: glacier-101, unit: gib-hours, amount: 96, window: day}
      grant-gpus: {project: era5-grant, unit: gpu-hours, amount: 100, window: month, per: total}

``per: member`` (the default) gives each member the amount; ``per: total`` shares it. A
cohort budget counts what its members ran as members of it; a project budget what was
charged to the project; a user budget everything the user ran. What counts:
:mod:`oggmhub.usage.units`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from oggmhub.errors import UserFacingError
from oggmhub.usage.units import UNIT_TEXT, worth

WINDOWS = ("day", "week", "month")
SCOPES = ("cohort", "project", "user")


class BudgetExceeded(UserFacingError):
    """A start refused because a budget is used up (403, the sentence shown as it is)."""

    def __init__(self, message):
        super().__init__(403, message, reason="Budget used up")


@dataclass(frozen=True)
class Budget:
    name: str
    scope: str  # cohort, project or user
    target: str
    unit: str
    amount: float
    window: str
    per: str = "member"

    @classmethod
    def from_catalog(cls, name, spec):
        scope = next(s for s in SCOPES if s in spec)
        return cls(name=name, scope=scope, target=spec[scope], unit=spec["unit"], amount=float(spec["amount"]),
                   window=spec.get("window", "day"), per=spec.get("per", "member"))

    def describe(self):
        per = " per member" if self.per == "member" and self.scope != "user" else ""
        return f"{self.amount:g} {UNIT_TEXT[self.unit]}{per} per {self.window} for {self.scope} {self.target}"

    def applies(self, user, cohorts, project):
        return ((self.scope == "user" and self.target == user) or (self.scope == "cohort" and self.target in cohorts)
                or (self.scope == "project" and self.target == project))

    def counts(self, record, user):
        """Whether ``record`` counts against this budget for ``user``."""
        if self.per == "member" and record["user"] != user:
            return False
        if self.scope == "user":
            return record["user"] == self.target
        return record[self.scope] == self.target


def catalog_budgets(catalog):
    return [Budget.from_catalog(n, s) for n, s in (getattr(catalog, "budgets", None) or {}).items()]


def window_of(window, now):
    """(begin, end) epoch seconds of the calendar window (UTC) holding ``now``."""
    moment = datetime.fromtimestamp(now, timezone.utc)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if window == "day":
        begin, end = day, day + timedelta(days=1)
    elif window == "week":
        begin = day - timedelta(days=day.weekday())
        end = begin + timedelta(days=7)
    else:
        begin = day.replace(day=1)
        end = (begin + timedelta(days=32)).replace(day=1)
    return begin.timestamp(), end.timestamp()


def used(budget, store, user, now):
    """What ``user`` (or, ``per: total``, everyone) used of ``budget`` in its current window."""
    begin, end = window_of(budget.window, now)
    records = store.records(begin, end, user=user if budget.per == "member" or budget.scope == "user" else None,
                            now=now)
    return sum(worth(r, begin, end, now)[budget.unit] for r in records if budget.counts(r, user))


def _utc(epoch):
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def exceeded(budgets, store, user, cohorts, project, now=None):
    """``[(budget, used, resets_at)]`` of the budgets applying to this session that are used up."""
    now = time.time() if now is None else now
    out = []
    for budget in budgets:
        if budget.applies(user, cohorts, project):
            spent = used(budget, store, user, now)
            if spent >= budget.amount:
                out.append((budget, spent, window_of(budget.window, now)[1]))
    return out


def sentence(budget, spent, resets_at):
    """The one sentence naming the budget, what is used and when it resets."""
    return (f"Budget {budget.name!r} ({budget.describe()}) is used up: {spent:.2f} {UNIT_TEXT[budget.unit]} "
            f"used this {budget.window}; it resets at {_utc(resets_at)}.")


def lab_notice(budget, spent, stops_at):
    """The one sentence shown inside JupyterLab: the budget used up and when the server stops."""
    return (f"oggmhub: your usage budget {budget.name!r} ({budget.describe()}) is used up "
            f"({spent:.2f} {UNIT_TEXT[budget.unit]} this {budget.window}), so this server will be stopped "
            f"at {_utc(stops_at)}: save your work now.")


def check_start(budgets, store, user, cohorts, project, now=None):
    """Raise :class:`BudgetExceeded` (before anything is created) if a budget is used up."""
    over = exceeded(budgets, store, user, cohorts, project, now)
    if over:
        raise BudgetExceeded(sentence(*over[0]))
