"""A unix account per hub user on the local backend (the TLJH model).

When the hub runs as root, each hub user's server runs as an unprivileged system account
of its own, created on the user's first start:

- its name is ``<prefix><slug>`` (prefix ``oggm-`` by default), at most 32 characters,
  lowercase letters, digits, ``-`` and ``_``: the hub username itself where it already
  fits (lowercase letters, digits and ``-``), else a slug of it, ``_`` and a short hash of
  the exact username, so two usernames that slug alike (``Ada.L`` and ``ada-l``) never
  get the same account (and the GECOS check below refuses one if hashes ever collided);
- it is a system account (``useradd --system``) with its own group, no login shell
  (servers are executed directly, never through a login) and, as home, the user's home
  under the hub's data directory (``--no-create-home``: the spawner makes the folder);
- its GECOS field records which hub and which hub user it belongs to
  (``oggmhub hub=<hub id> user=<hub username>``). An existing account of that name that
  records anything else (another hub user, another hub, or no oggmhub record at all) is
  never taken over: :class:`SystemAccountError` says so and nothing is changed.

:func:`ensure` creates or finds the account; :func:`lookup` only finds it.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from urllib.parse import quote

DEFAULT_PREFIX = "oggm-"
MAX_NAME = 32  # useradd's (and utmp's) limit
HASH_LEN = 8
NOLOGIN = next((p for p in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false") if os.path.exists(p)), "/bin/false")
_PREFIX_OK = re.compile(r"[a-z_][a-z0-9_-]{0,15}")
_lock = threading.Lock()  # two starts of one user at once create one account


class SystemAccountError(RuntimeError):
    """An account that cannot be used (or made) for a hub user; the message says why."""


@dataclass(frozen=True)
class Account:
    """A hub user's system account."""

    name: str
    uid: int
    gid: int
    home: str
    gecos: str

    def groups(self):
        """The supplementary groups of the account (computed in the hub, applied in the child)."""
        return sorted({self.gid} | {g.gr_gid for g in grp.getgrall() if self.name in g.gr_mem})


def check_prefix(prefix):
    """``prefix`` if it can start an account name, else ValueError naming what is allowed."""
    if not _PREFIX_OK.fullmatch(prefix or ""):
        raise ValueError(f"system_account_prefix {prefix!r} is not allowed: 1-16 characters, lowercase letters, "
                         "digits, '-' and '_', starting with a letter or '_' (e.g. 'oggm-')")
    return prefix


def account_name(hub_username, prefix=DEFAULT_PREFIX):
    """The system account name of ``hub_username``: deterministic, at most 32 characters,
    and different for different hub usernames (see the module's docstring)."""
    check_prefix(prefix)
    # a slug never holds '_', and only a hashed name has one (before its hash): a username
    # kept as it is never looks like another's hashed name
    slug = re.sub(r"[^a-z0-9-]+", "-", hub_username.lower()).strip("-") or "user"
    if slug == hub_username and len(prefix + slug) <= MAX_NAME:
        return prefix + slug  # the username itself: nothing was changed, nothing can collide
    digest = hashlib.sha256(hub_username.encode()).hexdigest()[:HASH_LEN]
    room = MAX_NAME - len(prefix) - HASH_LEN - 1
    return f"{prefix}{slug[:room].rstrip('-')}_{digest}"


def hub_id(data_dir):
    """A short id of the hub (its data directory's), as the cgroups' names use."""
    return hashlib.sha256(os.path.abspath(data_dir).encode()).hexdigest()[:8]


def gecos(hub, hub_username):
    """The GECOS record of ``hub_username``'s account on hub ``hub`` (no ':' ',' or newline)."""
    return f"oggmhub hub={hub} user={quote(hub_username, safe='@._-+')}"


def _account(entry):
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_gecos)


def lookup(hub_username, hub, prefix=DEFAULT_PREFIX):
    """``hub_username``'s account on hub ``hub``, or None if it does not exist yet.

    Raises :class:`SystemAccountError` if an account of that name exists but belongs to
    something else (its GECOS record says another hub user or hub, or nothing of ours).
    """
    name = account_name(hub_username, prefix)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    wanted = gecos(hub, hub_username)
    if entry.pw_gecos != wanted:
        recorded = entry.pw_gecos or "nothing"
        raise SystemAccountError(
            f"the system account {name!r} for hub user {hub_username!r} exists but records {recorded!r}, "
            f"not {wanted!r}: it is not this hub user's, and is never reused for another; remove it "
            f"(userdel {name}) if it is stale, or set c.LocalEnvSpawner.system_account_prefix to another prefix")
    if entry.pw_uid == 0:
        raise SystemAccountError(f"the system account {name!r} has uid 0; a user's server never runs as root")
    return _account(entry)


def ensure(hub_username, hub, home, prefix=DEFAULT_PREFIX):
    """``hub_username``'s account on hub ``hub``, created (with ``home`` as its home) if new."""
    with _lock:
        found = lookup(hub_username, hub, prefix)
        if found is not None:
            return found
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        name = account_name(hub_username, prefix)
        command = [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", os.path.abspath(home),
                   "--shell", NOLOGIN, "--comment", gecos(hub, hub_username), name]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SystemAccountError(f"could not create the system account {name!r} for {hub_username!r}: {e}") from e
        if done.returncode:
            why = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise SystemAccountError(f"could not create the system account {name!r} for {hub_username!r} "
                                     f"(useradd: {why[0]})")
        created = lookup(hub_username, hub, prefix)
        if created is None:
            raise SystemAccountError(f"useradd reported success but {name!r} cannot be found")
        return created


def remove(name):
    """Remove the account ``name`` and its group (tests; an admin's cleanup). Its files stay."""
    userdel = shutil.which("userdel") or "/usr/sbin/userdel"
    subprocess.run([userdel, name], capture_output=True, text=True)
    try:
        grp.getgrnam(name)
    except KeyError:
        return
    subprocess.run([shutil.which("groupdel") or "/usr/sbin/groupdel", name], capture_output=True, text=True)


def accounts_with_prefix(prefix):
    """The names of every account starting with ``prefix`` (tests clean up with it)."""
    return sorted(e.pw_name for e in pwd.getpwall() if e.pw_name.startswith(prefix))


def drop_privileges(account, groups):
    """In a child before exec: become ``account`` (groups, then gid, then uid; in this order,
    since each step needs the privileges the next one drops). Irreversible."""
    os.setgroups(groups)
    os.setgid(account.gid)
    os.setuid(account.uid)
    if os.getuid() != account.uid or os.geteuid() != account.uid:
        raise OSError(f"could not become {account.name}")
