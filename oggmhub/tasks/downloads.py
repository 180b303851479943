"""Reading a published output out of a user's home without following what the user controls.

The service (root on a local hub) opens the file's folder by descending from the home one
folder at a time without following links (:func:`oggmhub.backends.local.safe_files.open_dir`),
then the file relative to it with ``O_NOFOLLOW``: a folder or the file swapped for a link
at any moment is refused rather than followed. The file
must be a regular file and, with system accounts, the user's own (so a hard link to a
file of someone else's is refused too, where the kernel allows one at all).
"""

from __future__ import annotations

import os
import stat

from oggmhub.backends.local import safe_files


class NotDownloadable(Exception):
    pass


def read_home_file(home, path, owner_uid=None, limit=1 << 30):
    """The bytes of ``path`` (a file under ``home``), read without following links."""
    rel = os.path.relpath(path, home)
    parts = rel.split(os.sep)
    if rel.startswith("..") or ".." in parts or not parts[-1] or parts[-1] == ".":
        raise NotDownloadable(f"{path} is not in the home {home}")
    try:
        fd = safe_files.open_dir(home, "/".join(parts[:-1]))  # folder by folder, no link followed
    except OSError as e:
        raise NotDownloadable(f"the folder of the output {parts[-1]!r} is not a folder of the home "
                              f"({e.strerror or e})") from None
    try:
        file_fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
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
