"""A user's home quota, from the catalog's ``storage`` section.

::

    storage:
      home_quota: 10Gi            # everyone's, unless below says otherwise
      cohorts: {workshop: 2Gi}    # a member's: the largest of their cohorts'
      users: {alice: 50Gi}        # one user's own, over everything else

The catalog checks every value when it is loaded (16Mi to 1Pi, ``oggmhub catalog check``).
No ``home_quota`` and no entry for the user: no quota (the home is a plain folder).
"""

from __future__ import annotations

from dataclasses import dataclass

from oggmhub.session.quantities import parse_memory


@dataclass(frozen=True)
class HomeQuota:
    """``bytes`` of home for a user, and where that figure came from (``source``)."""

    bytes: int
    source: str  # "storage.users.alice", "storage.cohorts.workshop" or "storage.home_quota"


def home_quota(storage, username, cohort_names=()):
    """The :class:`HomeQuota` of ``username`` (member of ``cohort_names``), or None."""
    storage = storage or {}
    users = storage.get("users") or {}
    if username in users:
        return HomeQuota(parse_memory(users[username]), f"storage.users.{username}")
    cohorts = storage.get("cohorts") or {}
    found = [HomeQuota(parse_memory(cohorts[name]), f"storage.cohorts.{name}")
             for name in sorted(cohort_names) if name in cohorts]
    if found:
        return max(found, key=lambda q: q.bytes)
    if storage.get("home_quota") is not None:
        return HomeQuota(parse_memory(storage["home_quota"]), "storage.home_quota")
    return None


def user_quota(catalog, user, cohort_names=()):
    """The :class:`HomeQuota` of a hub ``user`` (member of ``cohort_names``), or None."""
    return home_quota(getattr(catalog, "storage", None), user.name, cohort_names)


def human(size):
    """``size`` bytes as people read them: ``1.5 GiB``, ``512 MiB``, ``12 KiB``, ``7 B``."""
    size = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            text = f"{size:.0f}" if unit == "B" or size >= 100 else f"{size:.1f}".removesuffix(".0")
            return f"{text} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # not reached
