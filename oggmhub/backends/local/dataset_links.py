"""``~/datasets/<name>``: a link in the user's home to each dataset this session mounts.

A local session's mounts live outside its home (under ``<data_dir>/mounts/<user>``), and
JupyterLab shows only what is under the server's root, the home. A symlink per mounted
dataset makes each browsable at ``lab/tree/datasets/<name>`` (where launch links open).
Links of datasets this session does not mount are removed; anything else in the folder
(the user's own files) is never touched.
"""

from __future__ import annotations

import os
import stat

from oggmhub.backends.local import safe_files

FOLDER = "datasets"


def link_datasets(home, targets, owner=None):
    """Point ``home/datasets/<name>`` at each ``targets[name]`` (a mounted folder).

    Returns the links made or kept. A name already taken by the user's own file or
    folder is left as it is (no user data is replaced). The hub (root) does this in the
    user's home: every step is relative to a descriptor of ``home/datasets`` opened
    without following links (:mod:`.safe_files`), so a link the user put at
    ``~/datasets`` raises :class:`~.safe_files.UnsafePath` and nothing is written through
    it. ``owner``: ``(uid, gid)`` for the folder and the links the hub makes.
    """
    try:
        fd = safe_files.open_dir(home, FOLDER)
    except FileNotFoundError:
        if not targets:
            return []
        fd = safe_files.makedirs(home, FOLDER, mode=0o755, owner=owner)
    try:
        return _link_in(fd, os.path.join(home, FOLDER), targets, owner)
    finally:
        os.close(fd)


def _link_in(fd, folder, targets, owner):
    for entry in os.scandir(fd):
        if entry.is_symlink() and entry.name not in targets:
            os.unlink(entry.name, dir_fd=fd)
    kept = []
    for name, target in targets.items():
        link = os.path.join(folder, name)
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not stat.S_ISLNK(st.st_mode):
                continue  # the user's own
            if os.readlink(name, dir_fd=fd) == target:
                kept.append(link)
                continue
            os.unlink(name, dir_fd=fd)
        os.symlink(target, name, dir_fd=fd)
        if owner is not None:
            os.chown(name, *owner, dir_fd=fd, follow_symlinks=False)
        kept.append(link)
    return kept
