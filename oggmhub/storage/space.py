"""The hub's own space: below a free-space threshold, no new server starts.

The hub's database, cookie secret and logs share a disk with the users' home images.
Home images are sparse: a mounted one may still grow up to its quota. A start is
refused when the disk's free space, less what mounted homes may still claim, would fall
below the space kept for the hub (``c.LocalEnvSpawner.min_free_space``): then no user,
however fast they write, can take the hub's last bytes.
"""

from __future__ import annotations

import os

from oggmhub.storage.quotas import human


def free_bytes(path):
    """Bytes an unprivileged writer may still use on the filesystem holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def start_refusal(free, may_grow, keep, where):
    """The one sentence refusing a start, or None when there is room.

    ``free``: bytes free on the disk at ``where``; ``may_grow``: bytes mounted homes may
    still claim (this start's included); ``keep``: bytes kept for the hub itself."""
    if free - may_grow >= keep:
        return None
    grow = f", homes may still grow by {human(may_grow)}" if may_grow else ""
    return (f"New servers cannot start now: the disk holding the hub's data ({where}) has "
            f"{human(free)} free{grow}, and the hub keeps {human(keep)} for its database and "
            f"logs; an administrator has been told and must free space.")
