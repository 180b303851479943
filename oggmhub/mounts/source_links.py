"""Links in a local-folder dataset: the root-run mount serves them only inside the dataset.

A local folder named as a dataset's source may hold symbolic links, made by whoever can
write there. The FUSE mount runs as root, so following a link to ``/etc/shadow`` would
serve a root-only file to every user. :class:`LocalSource` keeps the mount inside the
dataset: a link whose target (resolved) lies outside the source folder is not listed
and not served, and the hub's log says which link was skipped (once per link); a file
is read through file descriptors opened one folder at a time from the source folder
with ``O_NOFOLLOW``, so a link swapped in between the check and the read fails instead
of leading out. Links that stay inside the dataset are served as their targets.

(Bucket and HTTP sources have no links: an object is served from its own name under
the dataset's root, see ``ReadOnlyOperations._listing``.)
"""

from __future__ import annotations

import errno
import logging
import os
import stat

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


class LocalSource:
    """The source folder ``root`` of dataset ``dataset``, read without leaving it."""

    def __init__(self, root, dataset):
        self.root = os.path.realpath(root)
        self.dataset = dataset
        self._told = set()

    def inside(self, path):
        """Whether ``path`` (under the source folder), its links resolved, stays inside it."""
        real = os.path.realpath(path)
        return real == self.root or real.startswith(self.root.rstrip("/") + "/")

    def _skip(self, path):
        if path not in self._told:
            self._told.add(path)
            try:
                target = os.readlink(path)
            except OSError:
                target = os.path.realpath(path)
            log.warning("dataset %s: not serving %s: it is a link that leads out of the dataset's folder %s (to %s)",
                        self.dataset, path, self.root, target)

    def folder_allowed(self, path):
        """Whether the folder ``path`` may be listed (it, and the links on the way, stay inside)."""
        if self.inside(path):
            return True
        self._skip(path)
        return False

    def keep(self, listed):
        """The entries of a listing (fsspec ``ls(detail=True)``) that stay inside the dataset."""
        kept = []
        for entry in listed:
            name = entry["name"]
            if entry.get("islink") or os.path.islink(name):
                if not self.inside(name):
                    self._skip(name)
                    continue
            kept.append(entry)
        return kept

    def read(self, path, start, end):
        """Bytes ``start:end`` of the file at ``path``, opened without following any link
        (its links that stay inside resolved first), or an ``OSError``."""
        real = os.path.realpath(path)
        if not (real == self.root or real.startswith(self.root.rstrip("/") + "/")):
            self._skip(path)
            raise FileNotFoundError(errno.ENOENT, "not in the dataset", path)
        parts = [p for p in os.path.relpath(real, self.root).split("/") if p not in ("", ".")]
        if not parts:
            raise IsADirectoryError(errno.EISDIR, "a folder", path)
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for part in parts[:-1]:
                inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = inner
            file_fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        try:
            if not stat.S_ISREG(os.fstat(file_fd).st_mode):
                raise FileNotFoundError(errno.ENOENT, "not a regular file", path)
            chunks, offset = [], start
            while offset < end:
                chunk = os.pread(file_fd, end - offset, offset)
                if not chunk:
                    break
                chunks.append(chunk)
                offset += len(chunk)
            return b"".join(chunks)
        finally:
            os.close(file_fd)
