"""Scratch that cleans itself: files in users' scratch folders older than the catalog's
``storage.scratch_ttl_days`` are removed, except files some process holds open.

``<data dir>/scratch/<user>`` is each user's ``$OGGMHUB_SCRATCH`` (the local backend).
:func:`clean` walks one scratch root as root, descriptor-relative and never following a
link (a link itself is removed when old; what it points to never is), and returns what
it removed; the ``scratch-cleaner`` service (:mod:`.scratch_service`) runs it and logs
that. The hub's own files there (the Dask registry, the unavailable-datasets notice) are
left to the hub.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field

DAY = 86400
HUB_OWN = frozenset({"dask", "datasets-unavailable.json"})  # top-level names the hub keeps itself


@dataclass
class Removed:
    """What one run removed from one user's scratch: relative paths and bytes freed."""

    user: str
    paths: list = field(default_factory=list)
    bytes: int = 0
    kept_in_use: int = 0


def ttl_days(storage):
    """The catalog's ``storage.scratch_ttl_days``, or None (scratch is never cleaned)."""
    value = (storage or {}).get("scratch_ttl_days")
    return int(value) if value else None


def open_files():
    """``{(st_dev, st_ino)}`` of every file any process on this machine holds open (as root)."""
    held = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(os.path.join(fd_dir, fd))
            except OSError:
                continue
            held.add((st.st_dev, st.st_ino))
    return held


def clean(folder, user, ttl_seconds, now=None, held=None):
    """Remove from ``folder`` (one user's scratch) files and empty folders not modified for
    ``ttl_seconds``, unless held open; a :class:`Removed`."""
    now = time.time() if now is None else now
    held = open_files() if held is None else held
    removed = Removed(user)
    cutoff = now - ttl_seconds
    emptied = set()  # folders this pass removed something from (their mtime is now)
    if not os.path.isdir(folder) or os.path.islink(folder):
        return removed
    for top, dirs, files, dir_fd in os.fwalk(folder, topdown=False, follow_symlinks=False):  # dir_fd: this step's
        rel = os.path.relpath(top, folder)
        if rel.split(os.sep)[0] in HUB_OWN:
            continue
        for name in files:  # links among them: removed themselves, never followed
            if rel == "." and name in HUB_OWN:
                continue
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                continue
            if st.st_mtime >= cutoff:
                continue
            if (st.st_dev, st.st_ino) in held:
                removed.kept_in_use += 1
                continue
            try:
                os.unlink(name, dir_fd=dir_fd)
            except OSError:
                continue
            removed.paths.append(os.path.normpath(os.path.join(rel, name)))
            emptied.add(rel)
            removed.bytes += st.st_blocks * 512 if stat.S_ISREG(st.st_mode) else 0
        for name in dirs:
            if rel == "." and name in HUB_OWN or rel == "." and name == "tmp" or rel == "tmp":
                continue  # the hub's, and each server's TMPDIR (<scratch>/tmp/<server>): emptied, kept
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                path = os.path.normpath(os.path.join(rel, name))
                if stat.S_ISDIR(st.st_mode) and (st.st_mtime < cutoff or path in emptied):
                    os.rmdir(name, dir_fd=dir_fd)  # only if empty
                    removed.paths.append(path + "/")
                    emptied.add(rel)
            except OSError:
                continue
    return removed


def clean_all(scratch_root, ttl_seconds, now=None):
    """:func:`clean` every user's folder under ``scratch_root``; the :class:`Removed` of each."""
    held = open_files()
    try:
        users = sorted(os.listdir(scratch_root))
    except FileNotFoundError:
        return []
    return [clean(os.path.join(scratch_root, user), user, ttl_seconds, now, held) for user in users
            if os.path.isdir(os.path.join(scratch_root, user)) and not os.path.islink(os.path.join(scratch_root, user))]
