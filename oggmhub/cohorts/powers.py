"""What a cohort's organisers may do to accounts: their powers stay inside their cohort.

An organiser may add to their cohort a new username (the cohort creates the account and
owns it) or an existing account that is an ordinary user: not a hub admin, not the
organiser of any cohort, holding no role beyond ``user``, and a member of no cohort the
organiser does not organise. Hub admins may add anyone.

Exports and home deletions cover only the accounts a cohort *owns* (created by its add
or by its join code, recorded in its record's ``owned``) that are in no other open or
upcoming cohort and are not admins or organisers; every other member is listed as
skipped, with the reason. Every refusal names the account and the rule, and every
membership change, export and deletion is written to the hub's log as an
``oggmhub audit:`` line (:func:`audit`).
"""

from __future__ import annotations

from jupyterhub import orm

from oggmhub.cohorts.model import GROUP_PREFIX, ROLE_PREFIX, Cohort, CohortError, cohort_name, is_cohort_record

AUDIT_PREFIX = "oggmhub audit:"
_LISTED = 20  # names written out in one audit line; the rest are counted


class CohortPowerError(CohortError):
    """An organiser asked for something outside their cohort (HTTP 403)."""

    status = 403


def names_text(names, limit=_LISTED):
    names = list(names)
    text = ", ".join(names[:limit]) or "-"
    return text + (f" and {len(names) - limit} more" if len(names) > limit else "")


def audit(log, actor, action, cohort, names=(), detail=""):
    """One ``oggmhub audit:`` line in the hub's log: who did what to which accounts."""
    names = list(names)
    who = f" ({len(names)}): {names_text(names)}" if names else ""
    log.info("%s %s %s in cohort %s%s%s", AUDIT_PREFIX, actor or "?", action, cohort, who,
             f"; {detail}" if detail else "")


def _organises(user, records):
    """The cohorts ``user`` (an orm.User) organises: by role, or named in a record."""
    by_role = {r.name[len(ROLE_PREFIX):] for r in user.roles if r.name.startswith(ROLE_PREFIX)}
    by_record = {name for name, cohort in records.items() if user.name in cohort.organisers}
    return sorted(by_role | by_record)


def _records(db):
    records = {}
    for group in db.query(orm.Group).filter(orm.Group.name.startswith(GROUP_PREFIX)):
        if is_cohort_record(group.properties):
            records[group.properties["name"]] = Cohort.from_properties(group.properties)
    return records


def addition_problems(db, cohort, existing, caller):
    """Why the organiser ``caller`` may not add the ``existing`` accounts (orm.User objects)
    to ``cohort``: one line per account, naming it and the rule; empty if they may."""
    if not existing:
        return []
    records = _records(db)
    mine = {name for name, c in records.items() if caller in c.organisers}
    mine.add(cohort.name)
    problems = []
    for user in existing:
        who = f"members: {user.name!r}"
        if user.admin:
            problems.append(f"{who} is a hub admin; only hub admins may add an admin to a cohort")
            continue
        organised = _organises(user, records)
        if organised:
            problems.append(f"{who} organises cohort {', '.join(organised)}; only hub admins may add "
                            "an organiser to a cohort")
            continue
        roles = sorted(r.name for r in user.roles if r.name != "user" and not r.name.startswith(ROLE_PREFIX))
        if roles:
            problems.append(f"{who} holds the role {', '.join(roles)}; only hub admins may add such an account")
            continue
        others = sorted(n for n in (cohort_name(g.name) for g in user.groups) if n and n in records and n not in mine)
        if others:
            problems.append(f"{who} is a member of cohort {', '.join(others)}, which you do not organise; "
                            "only hub admins may add members of other cohorts")
    return problems


def check_additions(db, cohort, existing, caller, is_admin):
    """Raise :class:`CohortPowerError` (nothing added) unless ``caller`` may add ``existing``."""
    if is_admin:
        return
    problems = addition_problems(db, cohort, existing, caller)
    if problems:
        raise CohortPowerError([*problems, "nobody was added"])


def custody(db, cohort, usernames, now=None):
    """Split ``usernames`` (members of ``cohort``) into those whose homes the cohort may
    export and delete, and ``{name: reason}`` for the others (skipped)."""
    records = _records(db)
    users = {u.name: u for u in _find(db, usernames)}
    owned = set(cohort.owned)
    covered, skipped = [], {}
    for name in usernames:
        user = users.get(name)
        if name not in owned:
            skipped[name] = f"the account was not created by cohort {cohort.name!r} (it existed before it joined)"
            continue
        if user is not None and user.admin:
            skipped[name] = "the account is a hub admin"
            continue
        organised = _organises(user, records) if user is not None else []
        if organised:
            skipped[name] = f"the account organises cohort {', '.join(organised)}"
            continue
        others = sorted(
            n for n in (cohort_name(g.name) for g in (user.groups if user is not None else ()))
            if n and n != cohort.name and n in records and records[n].is_current(now)
        )
        if others:
            skipped[name] = f"the account is also a member of cohort {', '.join(others)}, which is open or still to come"
            continue
        covered.append(name)
    return covered, skipped


def _find(db, names, chunk=500):
    names = list(names)
    found = []
    for i in range(0, len(names), chunk):
        found += db.query(orm.User).filter(orm.User.name.in_(names[i:i + chunk])).all()
    return found


find_users = _find
