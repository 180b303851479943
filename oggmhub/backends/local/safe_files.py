"""File operations the hub (root) does inside folders a user can write, without ever
following the user's links.

A user's home, scratch folder and registries are theirs: any name in them may be a
symbolic link they planted to a root file (``ln -s /etc ~/…``), and may be swapped for one
between a check and the use. So nothing here resolves a path string inside such a tree:
each function opens the trusted folder (``base``: one whose parent the user cannot write,
e.g. ``<data_dir>/scratch/<user>``) with ``O_NOFOLLOW | O_DIRECTORY``, walks down one
component at a time the same way, and acts on the last name relative to that folder's
descriptor (``dir_fd``), refusing a link at every step:

- :func:`open_dir`: a descriptor of ``base/relpath``, never through a link;
- :func:`makedirs`: make ``base/relpath`` (owned by ``owner``), never through a link;
- :func:`write_atomic`: replace ``base/relpath`` with new content (a fresh temporary name,
  ``O_EXCL``, renamed over the old name: a link there is replaced, never written through);
- :func:`remove`: remove a file, a link (the link itself) or a whole tree
  (``shutil.rmtree`` with ``dir_fd``, which never follows links).

A link where a folder should be raises :class:`UnsafePath` (an ``OSError``) naming it.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(OSError):
    """A symbolic link (or not a folder) where the hub expected a folder of the user's."""


def _parts(relpath):
    parts = [p for p in relpath.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafePath(errno.EINVAL, f"'..' in {relpath!r}")
    return parts


def _open_in(dir_fd, name, where):
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(e.errno, f"{where} is a symbolic link or not a folder; the hub does not follow it") from None
        raise


def open_dir(base, relpath=""):
    """A descriptor of the folder ``base/relpath`` (close it), opened without following
    any link from ``base`` (itself included) down."""
    fd = _open_in(None, base, base)
    where = base
    try:
        for part in _parts(relpath):
            where = os.path.join(where, part)
            inner = _open_in(fd, part, where)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def makedirs(base, relpath, mode=0o700, owner=None):
    """Make the folders of ``base/relpath`` that are missing (``owner``: ``(uid, gid)`` they
    are given), never through a link; a descriptor of the last one (close it)."""
    fd = _open_in(None, base, base)
    where = base
    try:
        for part in _parts(relpath):
            where = os.path.join(where, part)
            try:
                os.mkdir(part, mode, dir_fd=fd)
                made = True
            except FileExistsError:
                made = False
            inner = _open_in(fd, part, where)
            if made and owner is not None:
                os.fchown(inner, *owner)
            if made:
                os.fchmod(inner, mode)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_atomic(base, relpath, data, mode=0o600, owner=None):
    """Replace ``base/relpath`` with ``data`` (bytes or str): written under a fresh name
    beside it and renamed over it, so a link at either name is never written through.
    ``owner``: ``(uid, gid)`` of the new file."""
    folder, name = os.path.split(relpath)
    if isinstance(data, str):
        data = data.encode("utf-8")
    dir_fd = open_dir(base, folder)
    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as f:
                if owner is not None:
                    os.fchown(f.fileno(), *owner)
                os.fchmod(f.fileno(), mode)
                f.write(data)
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
            raise
    finally:
        os.close(dir_fd)


def remove(base, relpath):
    """Remove ``base/relpath``: a file or link (the link itself, never its target) or a
    folder with everything in it (never following a link inside). Nothing there: no-op.
    True if something was removed."""
    folder, name = os.path.split(relpath.rstrip("/"))
    if not name:
        raise UnsafePath(errno.EINVAL, f"nothing to remove in {relpath!r}")
    try:
        dir_fd = open_dir(base, folder)
    except FileNotFoundError:
        return False
    try:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=dir_fd)  # fd-based: links inside are removed, not followed
        else:
            os.unlink(name, dir_fd=dir_fd)
        return True
    finally:
        os.close(dir_fd)


def split_under(path, base):
    """``path`` relative to ``base`` (both as given, not resolved), or ValueError."""
    path, base = os.path.abspath(path), os.path.abspath(base)
    if path == base:
        return ""
    if not path.startswith(base.rstrip("/") + "/"):
        raise ValueError(f"{path} is not inside {base}")
    return path[len(base.rstrip("/")) + 1:]
