"""How full a home is, and what fills it: figures a user and an admin read.

:func:`level` turns used/quota into the warning shown on the hub's home page (80% and
95%); :func:`needs_rescue` says when the next start is a *rescue start* (the home is full
or over its quota: the server starts anyway, showing the largest folders, so the user
can delete or move them without an admin). :func:`scan` walks a folder once, without
following links or leaving its filesystem, summing what each top-level entry holds.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

WARN, DANGER = 0.80, 0.95  # the warnings' thresholds, as fractions of the quota
FULL = 0.98  # at or above this, or within FULL_MARGIN of it, a start is a rescue start
FULL_MARGIN = 1024**2


@dataclass(frozen=True)
class Usage:
    """A scan's result: bytes ``used`` (allocated blocks), ``files`` counted, and the
    top-level entries with their sizes, largest first (``largest``: [(name, bytes)])."""

    used: int
    files: int
    largest: list = field(default_factory=list)


def scan(path, top=10):
    """:class:`Usage` of the folder ``path``: allocated bytes (``st_blocks``, as ``du``),
    links never followed, other filesystems (mounts inside) never entered."""
    try:
        root_dev = os.lstat(path).st_dev
    except FileNotFoundError:
        return Usage(0, 0, [])
    sizes, files = {}, 0
    with os.scandir(path) as entries:
        for entry in entries:
            size, count = _entry_size(entry, root_dev)
            sizes[entry.name] = size
            files += count
    ordered = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))
    return Usage(sum(sizes.values()), files, ordered[:top])


def _entry_size(entry, root_dev):
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return 0, 0
    size, count = st.st_blocks * 512, 1
    if stat.S_ISDIR(st.st_mode) and st.st_dev == root_dev:
        try:
            with os.scandir(entry.path) as inner:
                for child in inner:
                    s, c = _entry_size(child, root_dev)
                    size, count = size + s, count + c
        except OSError:
            pass  # unreadable: counted as far as it could be
    return size, count


def level(used, quota):
    """``"ok"``, ``"warn"`` (80% of the quota), ``"danger"`` (95%) or ``"over"`` (past it)."""
    if not quota:
        return "ok"
    share = used / quota
    if share > 1:
        return "over"
    return "danger" if share >= DANGER else "warn" if share >= WARN else "ok"


def needs_rescue(used, quota):
    """Whether a start with ``used`` bytes in a home of ``quota`` bytes is a rescue start."""
    return bool(quota) and (used >= quota * FULL or quota - used < FULL_MARGIN)
