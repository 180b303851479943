"""Cohorts in the hub's own database: no second database.

A cohort is the JupyterHub group ``cohort-<name>``: its members are the group's users,
its record (:class:`~oggmhub.cohorts.model.Cohort`) is the group's ``properties``. Its
organisers hold the role ``cohort-organiser-<name>``, whose scopes are filtered to the
group: they may read the cohort and its members and start and stop their servers through
JupyterHub's own REST API, and nothing else.

The roles are created with ``managed_by_auth`` set: JupyterHub deletes, at start-up,
every other role its configuration does not list, and these roles are created at run
time. :func:`ensure_roles` re-creates any that went missing from the groups' records
(the source of truth). Every change is one transaction: on any error nothing is written.

These functions run inside the hub (they take its SQLAlchemy session); the hub's REST
API and pages for cohorts call them through :mod:`oggmhub.cohorts.rules`.
"""

from __future__ import annotations

from jupyterhub import orm, roles
from sqlalchemy import select

from oggmhub import username_clash
from oggmhub.cohorts import joincodes
from oggmhub.cohorts.model import (
    CohortConflict,
    CohortError,
    CohortNotFound,
    GROUP_PREFIX,
    Cohort,
    JoinError,
    is_cohort_record,
    now_utc,
)
from oggmhub.cohorts.powers import find_users
from oggmhub.cohorts.validation import check_username


def organiser_scopes(cohort_name):
    """The scopes of a cohort's organiser role: its group's members and their servers."""
    group = GROUP_PREFIX + cohort_name
    return [f"read:groups!group={group}", f"read:users!group={group}", f"servers!group={group}"]


def all_cohorts(db):
    """Every cohort on the hub, as (group, Cohort) pairs, by name."""
    groups = db.query(orm.Group).filter(orm.Group.name.startswith(GROUP_PREFIX)).order_by(orm.Group.name)
    return [(g, Cohort.from_properties(g.properties)) for g in groups if is_cohort_record(g.properties)]


def load(db, name):
    """The (group, Cohort) of cohort ``name``; :class:`CohortNotFound` if there is none."""
    group = orm.Group.find(db, GROUP_PREFIX + str(name))
    if group is None or not is_cohort_record(group.properties):
        known = ", ".join(c.name for _, c in all_cohorts(db)) or "none yet"
        raise CohortNotFound(f"no cohort named {name!r}; cohorts on this hub: {known}")
    return group, Cohort.from_properties(group.properties)


def members(group):
    return sorted(u.name for u in group.users)


def member_names(db, group):
    """The names of ``group``'s members, from one query (no ORM objects loaded)."""
    rows = db.execute(select(orm.User.name).join(orm.user_group_map, orm.user_group_map.c.user_id == orm.User.id)
                      .where(orm.user_group_map.c.group_id == group.id))
    return {row[0] for row in rows}


def save(group, cohort):
    group.properties = cohort.to_properties()  # a new dict: the JSON column sees the change


def _user(db, name):
    """The hub user ``name``, created (with the default 'user' role) if missing; no commit."""
    user = orm.User.find(db, name)
    if user is None:
        user = orm.User(name=check_username(name, "username"))
        db.add(user)
        db.flush()
        roles.grant_role(db, entity=user, rolename="user", commit=False)
    return user


class transaction:
    """Commit on success, roll back on any error: nothing half-written."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        return self.db

    def __exit__(self, typ, value, tb):
        if typ is None:
            self.db.commit()
        else:
            self.db.rollback()
        return False


def _grant_organiser_role(db, cohort):
    role = orm.Role.find(db, cohort.role) or roles.create_role(
        db,
        {
            "name": cohort.role,
            "description": f"Organisers of cohort {cohort.name}: its members and their servers",
            "scopes": organiser_scopes(cohort.name),
            "managed_by_auth": True,  # kept across hub restarts (see the module's docstring)
        },
        commit=False,
    )
    for name in cohort.organisers:
        user = _user(db, name)
        if role not in user.roles:
            roles.grant_role(db, entity=user, role=role, commit=False)
    return role


def create(db, cohort, join_code=False, by=""):
    """Create ``cohort`` (group, record, organiser role) in one transaction.

    Returns (cohort, code): the join code in clear when ``join_code``, shown once and
    never stored.
    """
    if orm.Group.find(db, cohort.group) is not None:
        raise CohortConflict(f"name: a cohort named {cohort.name!r} already exists; choose another name")
    if orm.Role.find(db, cohort.role) is not None:
        raise CohortConflict(f"name: a role named {cohort.role!r} already exists on this hub; choose another name")
    code = joincodes.new_code() if join_code else None
    cohort = cohort.with_changes(join_code_hash=joincodes.hash_code(code) if code else None, created_by=by)
    with transaction(db):
        group = orm.Group(name=cohort.group, properties=cohort.to_properties())
        db.add(group)
        _grant_organiser_role(db, cohort)
    return cohort, code


def ensure_roles(db):
    """Re-create missing organiser roles and grants from the records; True if anything changed."""
    changed = False
    for _, cohort in all_cohorts(db):
        role = orm.Role.find(db, cohort.role)
        holders = {u.name for u in role.users} if role else set()
        if role is None or not set(cohort.organisers) <= holders:
            with transaction(db):
                _grant_organiser_role(db, cohort)
            changed = True
    return changed


def plan_members(db, name, usernames, vet=None):
    """Check an addition of ``usernames`` to cohort ``name`` without writing anything.

    Returns a :class:`MembersPlan`. Refused (:class:`CohortError`, nothing written) when
    the cohort is closed, a username is not valid, the size limit would be passed, or
    ``vet(cohort, existing_orm_users)`` raises.
    """
    group, cohort = load(db, name)
    if cohort.closed:
        raise CohortConflict(f"cohort {name!r} is closed; members can no longer be added")
    usernames = [check_username(u, "members") for u in usernames]
    current = member_names(db, group)
    new = [u for u in dict.fromkeys(usernames) if u not in current]
    if cohort.max_members is not None and len(current) + len(new) > cohort.max_members:
        raise CohortConflict(
            f"cohort {name!r} is limited to {cohort.max_members} members: it has {len(current)}, "
            f"and adding {len(new)} new would make {len(current) + len(new)}; nobody was added"
        )
    existing = find_users(db, new)
    if vet is not None:
        vet(cohort, existing)
    known = {u.name for u in existing}
    created = [u for u in new if u not in known]
    clashing = username_clash.clashes(db, created)
    if clashing:
        raise CohortConflict([*(f"members: {username_clash.message(n, o)}" for n, o in clashing.items()),
                              "nobody was added"])
    return MembersPlan(group=group, cohort=cohort, new=new, already=[u for u in usernames if u in current],
                       existing=existing, created=created)


class MembersPlan:
    """An addition checked by :func:`plan_members`; :func:`write_members` carries it out."""

    def __init__(self, group, cohort, new, already, existing, created):
        self.group, self.cohort, self.new, self.already = group, cohort, new, already
        self.existing, self.created = existing, created

    def bind(self, db):
        """What the writing thread needs: plain values, no ORM objects."""
        user_role = orm.Role.find(db, "user")
        properties = self.cohort.with_changes(owned=(*self.cohort.owned, *self.created)).to_properties()
        return dict(engine=db.get_bind(), group_id=self.group.id, role_id=user_role.id if user_role else None,
                    existing_ids=[u.id for u in self.existing], created=list(self.created), properties=properties)


def write_members(engine, group_id, role_id, existing_ids, created, properties, chunk=500):
    """Write a planned addition in ONE transaction on a connection of its own (safe to run
    in a thread, off the hub's event loop): new users with the 'user' role, the group's
    memberships, and the cohort's record (which now owns the created accounts)."""
    users, groups = orm.User.__table__, orm.Group.__table__
    with engine.begin() as conn:
        ids = list(existing_ids)
        if created:
            conn.execute(users.insert(), [{"name": n} for n in created])
            new_ids = []
            for i in range(0, len(created), chunk):
                new_ids += conn.execute(select(users.c.id).where(users.c.name.in_(created[i:i + chunk]))).scalars().all()
            if role_id is not None:
                conn.execute(orm.Base.metadata.tables["user_role_map"].insert(), [{"user_id": u, "role_id": role_id} for u in new_ids])
            ids += new_ids
        if ids:
            conn.execute(orm.user_group_map.insert(), [{"user_id": u, "group_id": group_id} for u in ids])
        conn.execute(groups.update().where(groups.c.id == group_id).values(properties=properties))


def after_write(db, plan):
    """Let the hub's own session see what :func:`write_members` wrote."""
    db.expire(plan.group)
    for user in plan.existing:
        db.expire(user)
    role = orm.Role.find(db, "user")
    if role is not None:
        db.expire(role)


def add_members(db, name, usernames, vet=None):
    """Add ``usernames`` (creating missing hub users, owned by the cohort); all or nothing.

    Returns (added, already members). Blocking: the hub's handlers run
    :func:`plan_members` and :func:`write_members` themselves, the write in a thread.
    """
    plan = plan_members(db, name, usernames, vet)
    write_members(**plan.bind(db))
    after_write(db, plan)
    return plan.new, plan.already


def remove_members(db, name, usernames):
    """Remove ``usernames`` from the cohort; all or nothing. Their accounts and homes stay."""
    group, _ = load(db, name)
    by_name = {u.name: u for u in group.users}
    missing = [u for u in usernames if u not in by_name]
    if missing:
        raise CohortError(f"not members of cohort {name!r}: {', '.join(missing)}; nobody was removed")
    with transaction(db):
        for username in dict.fromkeys(usernames):
            group.users.remove(by_name[username])
    return list(dict.fromkeys(usernames))


def change_organisers(db, name, add=(), remove=()):
    """Add and remove organisers (their role follows); all or nothing. The new list.

    Added organisers get a hub account if they have none; removed ones keep theirs (and
    any membership), only the organiser role goes.
    """
    group, cohort = load(db, name)
    add = [check_username(u, "add") for u in dict.fromkeys(add)]
    remove = list(dict.fromkeys(remove))
    problems = [f"remove: {u!r} is not an organiser of cohort {name!r}" for u in remove if u not in cohort.organisers]
    problems += [f"add and remove both name {u!r}" for u in add if u in remove]
    if not add and not remove:
        problems.append("give organisers to add or to remove")
    if problems:
        raise CohortError(problems)
    organisers = tuple(u for u in (*cohort.organisers, *add) if u not in remove)
    cohort = cohort.with_changes(organisers=tuple(dict.fromkeys(organisers)))
    with transaction(db):
        role = _grant_organiser_role(db, cohort)
        for username in remove:
            user = orm.User.find(db, username)
            if user is not None and role in user.roles:
                roles.strip_role(db, entity=user, role=role, commit=False)
        save(group, cohort)
    return list(cohort.organisers)


def new_join_code(db, name):
    """A new join code for the cohort (the old one stops working); shown once."""
    group, cohort = load(db, name)
    if cohort.closed:
        raise CohortConflict(f"cohort {name!r} is closed; it takes no join code")
    code = joincodes.new_code()
    with transaction(db):
        save(group, cohort.with_changes(join_code_hash=joincodes.hash_code(code)))
    return code


def find_by_join_code(db, code, now=None):
    """The (group, Cohort) ``code`` lets one more member join now; :class:`JoinError` if none."""
    now = now or now_utc()
    for group, cohort in all_cohorts(db):
        if cohort.join_code_hash and joincodes.verify(code, cohort.join_code_hash):
            cohort.check_can_join(len(group.users), now)
            return group, cohort
    raise JoinError("the join code is not valid; check it with your organiser")


def join(db, name, username, now=None):
    """Add a new account to the cohort through its join code (window and size checked again)."""
    group, cohort = load(db, name)
    if username not in members(group):
        cohort.check_can_join(len(group.users), now)
        with transaction(db):
            created = orm.User.find(db, username) is None
            group.users.append(_user(db, username))
            if created:  # the join code made this account: the cohort owns it
                cohort = cohort.with_changes(owned=(*cohort.owned, username))
                save(group, cohort)
    return cohort


def close(db, name, now=None):
    """Mark the cohort closed: its join code stops working, members' spawns are refused."""
    group, cohort = load(db, name)
    if cohort.closed:
        return cohort
    cohort = cohort.with_changes(closed_at=now or now_utc())
    with transaction(db):
        save(group, cohort)
    return cohort


def record_export(db, name, entry):
    group, cohort = load(db, name)
    cohort = cohort.with_changes(exports=(*cohort.exports, dict(entry)))
    with transaction(db):
        save(group, cohort)
    return cohort


def record_homes_deleted(db, name, now=None):
    group, cohort = load(db, name)
    cohort = cohort.with_changes(homes_deleted_at=now or now_utc())
    with transaction(db):
        save(group, cohort)
    return cohort
