"""A stand-in mount for a dataset the mount sidecar left out (catalog ``required: false``,
source unreachable): a tiny read-only tmpfs at the dataset's mount path holding one note
that says why.

The pod's probes check ``mountpoint -q PATH`` for every dataset (the only form the user
namespace's admission policy admits, :mod:`oggmhub.backends.kubernetes.namespace`), so
with the stand-in the pod becomes ready without the dataset, and a user who lists the
folder reads why it is empty instead of meeting a bare directory.
"""

from __future__ import annotations

import os
import subprocess

from oggmhub.mounts.table import mount_table
from oggmhub.session.datasets import UNAVAILABLE_NOTE as NOTE

FSNAME = "oggmhub-unavailable"


class PlaceholderError(RuntimeError):
    """A stand-in mount could not be made (not root, no ``mount``)."""


def _run(command):
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PlaceholderError(f"{command[0]}: {e}") from None
    if result.returncode:
        raise PlaceholderError(result.stderr.strip() or f"{' '.join(command)} exited {result.returncode}")


def mount_placeholder(path, dataset, reason):
    """Mount the stand-in for ``dataset`` (its name) at ``path``, its note saying ``reason``.
    Raises :class:`PlaceholderError` when it cannot (then nothing is left mounted)."""
    os.makedirs(path, exist_ok=True)
    _run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755,nosuid,nodev,noexec", FSNAME, path])
    try:
        with open(os.path.join(path, NOTE), "w", encoding="utf-8") as f:
            f.write(f"The dataset '{dataset}' is not available in this session.\n{reason}.\n"
                    "The server started without it; ask the hub's admins if you need it.\n")
        _run(["mount", "-o", "remount,ro,nosuid,nodev,noexec", path])
    except (OSError, PlaceholderError):
        unmount_placeholders([path])
        raise


def placeholders(under="/"):
    """The stand-in mounts at or below ``under``."""
    under = os.path.abspath(under).rstrip("/") + "/"
    return [path for path, fstype, source in mount_table()
            if fstype == "tmpfs" and source == FSNAME and (path + "/").startswith(under)]


def unmount_placeholders(paths):
    """Unmount the stand-ins among ``paths`` (lazily: a shell may still be in one)."""
    live = set(placeholders())
    for path in paths:
        if path in live:
            subprocess.run(["umount", "-l", path], capture_output=True)
