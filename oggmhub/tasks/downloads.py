"""Reading a published output out of a user's home without following what the user controls.

The service (root on a local hub) opens the file by descending from the home one folder
at a time, each relative to the one before (``dir_fd``) and with ``O_NOFOLLOW``: a folder
or the file swapped for a link at any moment is refused rather than followed. The file
must be a regular file and, with system accounts, the user's own (so a hard link to a
file of someone else's is refused too, where the kernel allows one at all).
"""

from __future__ import annotations

import os
import stat


class NotDownloadable(Exception):
    pass


def read_home_file(home, path, owner_uid=None, limit=1 << 30):
    """The bytes of ``path`` (a file under ``home``), read without following links."""
    rel = os.path.relpath(path, home)
    parts = rel.split(os.sep)
    if rel.startswith("..") or ".." in parts or not parts[-1] or parts[-1] == ".":
        raise NotDownloadable(f"{path} is not in the home {home}")
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(home, flags | os.O_DIRECTORY)
    except OSError as e:
        raise NotDownloadable(f"the home {home} cannot be opened: {e.strerror}") from None
    try:
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            except OSError as e:
                raise NotDownloadable(f"{part!r} on the way to the output is not a folder of the home "
                                      f"({e.strerror})") from None
            os.close(fd)
            fd = next_fd
        try:
            file_fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
        except OSError as e:
            raise NotDownloadable(f"the output {parts[-1]!r} cannot be read as a file of the home ({e.strerror})") from None
    finally:
        os.close(fd)
    with os.fdopen(file_fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise NotDownloadable(f"the output {parts[-1]!r} is not a regular file")
        if owner_uid is not None and st.st_uid != owner_uid:
            raise NotDownloadable(f"the output {parts[-1]!r} is not the user's own file")
        return f.read(limit)
