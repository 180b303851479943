"""The admins' storage table: per user, home used / quota, scratch used, last activity.

:func:`row` measures one user's folders (a home mounted from its image is read from the
filesystem at once, ``statvfs``; a plain folder is scanned); :func:`to_csv` writes the
rows as the CSV the admin page offers. Figures are bytes; the page shows them for people.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess

from oggmhub.storage import usage
from oggmhub.storage.quotas import human

COLUMNS = ("user", "home_used", "home_quota", "home_percent", "scratch_used", "last_activity")


def used_bytes(path):
    """Bytes held under ``path``: its own filesystem's use if ``path`` is a mount point (a
    home image), else ``du -sx`` (links never followed; 3x a Python walk), else a scan;
    0 if it does not exist."""
    try:
        if os.path.ismount(path):
            st = os.statvfs(path)
            return (st.f_blocks - st.f_bfree) * st.f_frsize
        if not os.path.isdir(path):
            return 0
    except OSError:
        return 0
    try:
        done = subprocess.run(["du", "-sxB1", "--", path], capture_output=True, text=True, timeout=600)
        if done.stdout:  # du says what it could not read on stderr, and still sums the rest
            return int(done.stdout.split()[0])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass
    return usage.scan(path, top=0).used


def row(user, home, scratch, quota, last_activity):
    """One user's row (``quota``: bytes or None; ``last_activity``: ISO-8601 text or '')."""
    used = used_bytes(home) if home else None
    return {
        "user": user,
        "home_used": used,
        "home_quota": quota,
        "home_percent": round(100 * used / quota, 1) if quota and used is not None else None,
        "scratch_used": used_bytes(scratch) if scratch else None,
        "last_activity": last_activity or "",
    }


def for_people(r):
    """A row with sizes as people read them (the page)."""
    def size(value):
        return "—" if value is None else human(value)

    return {**r, "home_used": size(r["home_used"]), "home_quota": size(r["home_quota"]),
            "scratch_used": size(r["scratch_used"]),
            "level": usage.level(r["home_used"] or 0, r["home_quota"]) if r["home_quota"] else "ok"}


def to_csv(rows):
    """The rows as CSV text, bytes as numbers, a header line first."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if r.get(k) is None else r[k] for k in COLUMNS})
    return out.getvalue()
