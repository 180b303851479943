"""Cohorts: a named group of users with a time window and rules (pure, no I/O).

A cohort has organisers, members, a window (UTC), the environments and sizes its members
may use, per-member limits (servers, Dask workers, GPUs), optional materials (a git
repository pulled into each member's home) and a way to join (a CSV of usernames, or a
join code). The hub stores it as a JupyterHub group ``cohort-<name>`` whose
``properties`` hold :meth:`Cohort.to_properties` (see :mod:`oggmhub.cohorts.store`).

Everything here validates input and reports every problem at once, each naming the field,
what was wrong and what is allowed::

    environments.oggm: size 'huge' is not offered for OGGM; choose from: small, medium, large
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from tornado import web

from oggmhub import times
from oggmhub.session import env as session_vars

GROUP_PREFIX = "cohort-"
ROLE_PREFIX = "cohort-organiser-"
RECORD_VERSION = 1
NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
NAME_RULE = "1-40 lower-case letters, digits or '-', starting and ending with a letter or digit"
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._@+-]{0,99}$")
USERNAME_RULE = "letters, digits, '.', '_', '-', '+' or '@', starting with a letter or digit; no spaces, commas or slashes"
GIT_URL = re.compile(r"^(https?://\S+|git://\S+|ssh://\S+|file:///\S+|[\w.-]+@[\w.-]+:\S+)$")
GIT_REF = re.compile(r"^(?!.*\.\.)(?!/)(?!.*//)[A-Za-z0-9._/-]{1,200}(?<![/.])$")
DIR_NAME = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9._-]{1,100}$")
LIMITS = {  # name: (default, minimum, maximum, what it means)
    "servers": (1, 1, 10, "servers a member may run at once"),
    "dask_workers": (4, 0, 1000, "Dask workers per member"),
    "gpus": (0, 0, 16, "GPUs per server"),
}
HOUR = 3600


class CohortError(web.HTTPError):
    """Input the cohort rules refuse; ``problems`` holds one line per problem.

    An HTTP error (400 unless a subclass says otherwise), so the hub answers with it as it is.
    """

    status = 400

    def __init__(self, problems):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.message = self.jupyterhub_message = "; ".join(self.problems)
        super().__init__(self.status, "%s", self.message, reason="Refused by the cohort rules")

    def __str__(self):
        return self.message


class CohortNotFound(CohortError):
    status = 404


class CohortConflict(CohortError):
    status = 409


class JoinError(CohortError):
    """A join code that cannot be used (wrong, expired, not yet valid, cohort full)."""

    status = 403


def group_name(name):
    return GROUP_PREFIX + name


def role_name(name):
    return ROLE_PREFIX + name


def cohort_name(group):
    """The cohort name of a group name, or None if the group is not a cohort."""
    return group[len(GROUP_PREFIX):] if group.startswith(GROUP_PREFIX) else None


# --- time --------------------------------------------------------------------------------


def now_utc():
    return datetime.now(timezone.utc).replace(microsecond=0)


def parse_time(value, field_name):
    """:func:`oggmhub.times.parse_time`, refusing with a :class:`CohortError` (a 400)."""
    try:
        return times.parse_time(value, field_name)
    except times.TimeError as e:
        raise CohortError(str(e)) from None


def format_time(moment):
    """``2026-06-01T08:00:00Z``: how times are stored."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_time(moment):
    """``2026-06-01 08:00 UTC``: how times are shown."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# --- the model -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Materials:
    """A git repository pulled into each member's home (``~/<dir>``) on first start."""

    repo: str
    branch: str = "main"
    dir: str = ""

    def to_dict(self):
        return {"repo": self.repo, "branch": self.branch, "dir": self.dir}


@dataclass(frozen=True)
class Cohort:
    name: str
    start: datetime
    end: datetime
    environments: dict  # environment name -> tuple of size names, or None for all sizes
    organisers: tuple = ()
    limits: dict = field(default_factory=lambda: {k: v[0] for k, v in LIMITS.items()})
    materials: Materials | None = None
    max_members: int | None = None
    title: str = ""
    join_code_hash: str | None = None
    closed_at: datetime | None = None
    created_at: datetime | None = None
    created_by: str = ""
    exports: tuple = ()  # dicts: id, at, sha256, bytes, members, by
    homes_deleted_at: datetime | None = None
    owned: tuple = ()  # accounts this cohort created (its add or its join code): exports and deletions cover only these
    invited: tuple = ()  # existing accounts an organiser invited; members only once they accept (cohorts.invitations)

    @property
    def group(self):
        return group_name(self.name)

    @property
    def role(self):
        return role_name(self.name)

    @property
    def closed(self):
        return self.closed_at is not None

    def window_text(self):
        return f"from {human_time(self.start)} to {human_time(self.end)}"

    def is_current(self, now=None):
        """Open now or still to come (not closed, not ended)."""
        return not self.closed and (now or now_utc()) < self.end

    def is_open(self, now=None):
        now = now or now_utc()
        return not self.closed and self.start <= now < self.end

    def closed_reason(self, now=None):
        """Why a member cannot use this cohort now, or None while it is open."""
        now = now or now_utc()
        if self.closed:
            return f"cohort {self.name!r} was closed on {human_time(self.closed_at)}"
        if now < self.start:
            return f"cohort {self.name!r} opens on {human_time(self.start)} (it runs {self.window_text()})"
        if now >= self.end:
            return f"cohort {self.name!r} ended on {human_time(self.end)} (it ran {self.window_text()})"
        return None

    def check_can_join(self, members, now=None):
        reason = self.closed_reason(now)
        if reason:
            what = "has expired" if self.closed or (now or now_utc()) >= self.end else "is not valid yet"
            raise JoinError(f"the join code {what}: {reason}")
        if self.max_members is not None and members >= self.max_members:
            raise JoinError(f"cohort {self.name!r} is full ({self.max_members} members); ask your organiser")

    def to_properties(self):
        """The JSON stored in the group's properties (never a join code in clear)."""
        return {
            "oggmhub_cohort": RECORD_VERSION,
            "name": self.name,
            "title": self.title,
            "organisers": list(self.organisers),
            "start": format_time(self.start),
            "end": format_time(self.end),
            "environments": {k: list(v) if v is not None else None for k, v in self.environments.items()},
            "limits": dict(self.limits),
            "materials": self.materials.to_dict() if self.materials else None,
            "max_members": self.max_members,
            "join_code_hash": self.join_code_hash,
            "closed_at": format_time(self.closed_at) if self.closed_at else None,
            "created_at": format_time(self.created_at) if self.created_at else None,
            "created_by": self.created_by,
            "exports": [dict(e) for e in self.exports],
            "homes_deleted_at": format_time(self.homes_deleted_at) if self.homes_deleted_at else None,
            "owned": list(self.owned),
            "invited": list(self.invited),
        }

    def public(self):
        """What organisers see: the record without the join code's hash."""
        record = self.to_properties()
        record["has_join_code"] = bool(record.pop("join_code_hash"))
        record.pop("oggmhub_cohort")
        return record

    @classmethod
    def from_properties(cls, props):
        """The cohort stored in a group's properties (trusted: written by this module)."""
        materials = props.get("materials")
        optional = lambda key: parse_time(props[key], key) if props.get(key) else None  # noqa: E731
        return cls(
            name=props["name"],
            title=props.get("title") or "",
            start=parse_time(props["start"], "start"),
            end=parse_time(props["end"], "end"),
            environments={k: tuple(v) if v is not None else None for k, v in props["environments"].items()},
            organisers=tuple(props.get("organisers") or ()),
            limits={**{k: v[0] for k, v in LIMITS.items()}, **(props.get("limits") or {})},
            materials=Materials(**materials) if materials else None,
            max_members=props.get("max_members"),
            join_code_hash=props.get("join_code_hash"),
            closed_at=optional("closed_at"),
            created_at=optional("created_at"),
            created_by=props.get("created_by") or "",
            exports=tuple(props.get("exports") or ()),
            homes_deleted_at=optional("homes_deleted_at"),
            owned=tuple(props.get("owned") or ()),
            invited=tuple(props.get("invited") or ()),
        )

    def with_changes(self, **changes):
        return replace(self, **changes)


def is_cohort_record(props):
    return isinstance(props, dict) and props.get("oggmhub_cohort") == RECORD_VERSION


# --- what a member may do -----------------------------------------------------------------


@dataclass(frozen=True)
class MemberPolicy:
    """What a cohort member may start now, from all their cohorts.

    ``environments`` maps environment name to allowed sizes (None: all), the union over
    the member's open cohorts; ``refusal`` is set when none is open.
    """

    cohorts: tuple
    environments: dict
    limits: dict
    materials: tuple = ()
    refusal: str | None = None

    def session_env(self):
        """Variables telling notebook-side helpers the member's limits."""
        return {
            session_vars.COHORTS: ",".join(self.cohorts),
            session_vars.MAX_DASK_WORKERS: str(self.limits["dask_workers"]),
            session_vars.MAX_GPUS: str(self.limits["gpus"]),
        }


def member_policy(cohorts, now=None):
    """The :class:`MemberPolicy` for a member of ``cohorts``, or None for a non-member."""
    cohorts = list(cohorts)
    if not cohorts:
        return None
    now = now or now_utc()
    open_ = [c for c in cohorts if c.is_open(now)]
    if not open_:
        reasons = "; ".join(c.closed_reason(now) for c in cohorts)
        return MemberPolicy(
            cohorts=tuple(c.name for c in cohorts), environments={}, limits={k: 0 for k in LIMITS},
            refusal=f"Your server can only start during your cohort's window: {reasons}. It is now {human_time(now)}.",
        )
    environments = {}
    for cohort in open_:
        for env, sizes in cohort.environments.items():
            if sizes is None or env in environments and environments[env] is None:
                environments[env] = None
            else:
                environments[env] = tuple(dict.fromkeys((*(environments.get(env) or ()), *sizes)))
    limits = {key: max(c.limits[key] for c in open_) for key in LIMITS}
    materials = tuple(c.materials for c in open_ if c.materials)
    return MemberPolicy(cohorts=tuple(c.name for c in open_), environments=environments,
                        limits=limits, materials=materials)


def user_cohorts(user):
    """The cohorts a hub user (anything with ``.groups`` of ``.name``/``.properties``) belongs to."""
    found = []
    for group in getattr(user, "groups", None) or ():
        props = getattr(group, "properties", None)
        if cohort_name(group.name) and is_cohort_record(props):
            found.append(Cohort.from_properties(props))
    return found


def prewarm_choice(cohort):
    """The server options a pre-warm starts: the cohort's first environment at the size
    the hub picks for it (its default size if the cohort allows it, else the first allowed)."""
    return {"profile": next(iter(cohort.environments))}
