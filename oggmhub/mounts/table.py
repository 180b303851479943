"""What this machine has mounted, read from ``/proc/self/mountinfo``."""

from __future__ import annotations

FSNAME_PREFIX = "oggmhub:"  # an oggmhub mount's source there: oggmhub:<dataset>
SUBTYPE = "oggmhub"  # its type there is fuse.oggmhub


def mounted():
    """``{mount point: source}`` of this machine's oggmhub FUSE mounts."""
    return {path: source for path, fstype, source in mount_table() if fstype == "fuse." + SUBTYPE}


def mount_table():
    """``(mount point, filesystem type, source)`` of every mount this process sees."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    table = []
    for line in lines:
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) >= 5 and len(tail) >= 2:
            table.append((_unescape(fields[4]), tail[0], _unescape(tail[1])))
    return table


def _unescape(text):
    return text.encode().decode("unicode_escape") if "\\" in text else text
