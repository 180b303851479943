"""Who may read what in the local hub's data directory when users have system accounts.

- the data directory, and its ``homes/``, ``mounts/`` and ``scratch/``: ``0711``, owned by
  root: each account can reach its own folder by name, none can list who else has one;
- a user's home and scratch folder: owned by the user's account, ``0700``;
- a user's mount root: root's, the account's group, ``0750`` (root makes mount points in
  it: the user may enter it, not plant links in it);
- environments (``envs/`` or wherever ``env_dir`` is): root-owned, ``0755`` folders and
  world-readable files, so every account runs them and none changes them;
- everything else the hub keeps there (its database, cookie secret, logs, exports):
  ``0600`` files and ``0700`` folders, root's alone.

:func:`blocked_for_others` tells whether a path can be reached by an account at all (a
data directory under ``/root``, mode 0700, cannot), so that the hub can say so before a
server fails mysteriously.
"""

from __future__ import annotations

import os
import stat
import tempfile

SHARED_DIRS = ("homes", "mounts", "scratch")  # 0711: one folder per user inside


def blocked_for_others(path):
    """The first folder on the way to ``path`` (itself included) that other users cannot
    traverse (no ``o+x``), or None where every account can reach it."""
    path = os.path.abspath(path)
    parts = path.split(os.sep)
    for i in range(1, len(parts) + 1):
        folder = os.sep.join(parts[:i]) or os.sep
        try:
            mode = os.stat(folder).st_mode
        except FileNotFoundError:
            return None  # what does not exist yet is made by the hub, with the modes above
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return folder
    return None


def describe_blocked(path, what, option):
    """A sentence for :func:`blocked_for_others`'s answer, or None."""
    blocked = blocked_for_others(path)
    if blocked is None:
        return None
    mode = stat.S_IMODE(os.stat(blocked).st_mode)
    return (f"{what} cannot be reached by the users' system accounts: {blocked} is mode {mode:04o} "
            f"(no o+x). Choose a place they can traverse ({option}), or `chmod o+x {blocked}`")


def secure_data_dir(data_dir, keep_open=()):
    """Set the modes of the module's docstring on ``data_dir`` and what is directly in it.

    ``keep_open``: folders in it that must stay world-readable (an env_dir inside it).
    """
    data_dir = os.path.abspath(data_dir)
    os.makedirs(data_dir, mode=0o711, exist_ok=True)
    os.chmod(data_dir, 0o711)
    keep_open = {os.path.abspath(p) for p in keep_open}
    for entry in os.scandir(data_dir):
        if entry.is_symlink():
            continue
        if entry.path in keep_open:
            os.chmod(entry.path, 0o755)
        elif entry.is_dir():
            os.chmod(entry.path, 0o711 if entry.name in SHARED_DIRS else 0o700)
        else:
            mode = stat.S_IMODE(entry.stat().st_mode)
            if mode & 0o077:
                os.chmod(entry.path, mode & 0o700)
    for name in SHARED_DIRS:
        os.makedirs(os.path.join(data_dir, name), mode=0o711, exist_ok=True)
        os.chmod(os.path.join(data_dir, name), 0o711)


class FolderTaken(PermissionError):
    """A user's folder that exists under another account: never handed over."""


def private_dir(path, account):
    """Make ``path`` (if missing) and give it to ``account``, mode 0700.

    A folder the hub itself (root) owns, e.g. one an earlier hub in shared mode left, is
    handed over with its content. A folder owned by any other account is never taken
    over (that would give one user another's files): :class:`FolderTaken` names it and
    its owner, and nothing is changed."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise OSError(f"{path} is a symbolic link; a user's folder must be a folder")
    check_not_taken(path, account)
    if st.st_uid != account.uid:
        give(path, account)
    os.chmod(path, 0o700)


def check_not_taken(path, account):
    """:class:`FolderTaken` if ``path`` exists and belongs to neither ``account`` (None: no
    account yet) nor the hub itself; nothing is changed."""
    try:
        owner = os.lstat(path).st_uid
    except FileNotFoundError:
        return
    if owner in (os.geteuid(), getattr(account, "uid", None)):
        return
    name = getattr(account, "name", "its user")
    raise FolderTaken(
        f"{path} already exists and belongs to {_owner(owner)}, not to {name}: the hub never "
        f"hands one account's folder to another. If it is really {name}'s (e.g. its account was "
        f"made again), an admin can `chown -R {name}: {path}`; else remove or rename it")


def _owner(uid):
    import pwd

    try:
        return f"the account {pwd.getpwuid(uid).pw_name!r} (uid {uid})"
    except KeyError:
        return f"uid {uid}, which no account has now"


def give(path, account):
    """Hand ``path`` and everything under it to ``account``; symbolic links are changed,
    never followed. What is inside goes first, ``path`` itself last: until then the
    account cannot change anything in it. For what the hub itself just wrote into a
    user's folder (or a task's working folder).

    The walk is descriptor-relative (``os.fwalk``, ``dir_fd``): a folder swapped for a
    link while it runs is not followed, so nothing outside ``path`` changes owner."""
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        for _, dirs, files, dir_fd in os.fwalk(path, topdown=False):
            for name in dirs + files:
                try:
                    os.chown(name, account.uid, account.gid, dir_fd=dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
    os.chown(path, account.uid, account.gid, follow_symlinks=False)


def hub_owned_dir(path, account):
    """Make ``path`` (if missing) root's with ``account``'s group, mode 0750: the account
    can enter and list it, not write in it (the mount root: root makes mount points in
    it, so no link of the user's may be there). One an earlier hub gave to the user is
    taken back, and the links they left in it are removed (the mounts in it are left)."""
    os.makedirs(path, mode=0o750, exist_ok=True)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise OSError(f"{path} is a symbolic link; the hub's folder for a user must be a folder")
    if st.st_uid != os.geteuid():
        os.chown(path, os.geteuid(), account.gid, follow_symlinks=False)
        os.chmod(path, 0o750)
        _remove_links(path, st.st_dev)
    os.chown(path, os.geteuid(), account.gid, follow_symlinks=False)
    os.chmod(path, 0o750)


def _remove_links(path, device):
    """Remove the symbolic links under ``path`` on ``device`` (not inside mounts)."""
    for _, dirs, files, dir_fd in os.fwalk(path):
        for name in list(dirs):
            if os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_dev != device:
                dirs.remove(name)  # a mount: not ours to walk
        for name in files + dirs:
            if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                os.unlink(name, dir_fd=dir_fd)


def inside(path, folder):
    """Whether ``path``, with its symbolic links resolved, lies inside ``folder``: the hub
    (root) never writes where a user's link would send it."""
    real, base = os.path.realpath(path), os.path.realpath(folder)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def publish_tree(path):
    """Make ``path`` readable (and its folders and programs runnable) by every account,
    writable by its owner only: an environment every user's server runs from."""
    def fix(p, is_dir):
        mode = stat.S_IMODE(os.lstat(p).st_mode)
        wanted = (mode | 0o444 | (0o111 if is_dir or mode & 0o100 else 0)) & ~0o022
        if wanted != mode:
            os.chmod(p, wanted)

    fix(path, True)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                fix(p, True)
        for name in files:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                fix(p, False)


def publish_start_script(start, venv):
    """A copy of ``start`` in ``venv`` (root's, world-runnable), replaced atomically when it changed."""
    dest = os.path.join(venv, "oggmhub-start")
    with open(start, "rb") as f:
        content = f.read()
    try:
        with open(dest, "rb") as f:
            if f.read() == content:
                return dest
    except OSError:
        pass
    fd, tmp = tempfile.mkstemp(dir=venv, prefix=".oggmhub-start-")
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    return dest
