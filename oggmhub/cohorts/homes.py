"""Members' homes at the end of a cohort (local backend): one archive, then, if asked, deletion.

Homes live in ``<homes_dir>/<folder name>`` (:func:`oggmhub.user_folders.home_path`, as the spawner's).
:func:`export_homes` writes one ``tar.gz`` holding ``<username>/...`` for every member,
to a temporary name first, reads it back whole and records its SHA-256; only then is it
an export. :func:`delete_homes` refuses unless such an export, still on disk with the same
SHA-256, covers every member. The export also records what each member's home held
(``usage``, bytes: :func:`oggmhub.storage.table.used_bytes`); a home that is a quota image
(docs/storage.md) is unmounted and its image removed with it.

On Kubernetes a home is the member's PersistentVolumeClaim ``home-<username>``: the hub
cannot read it, so it exports nothing and deletes nothing; closing a cohort keeps every
claim (back them up with the storage's own snapshots).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile

from oggmhub.cohorts.model import CohortConflict, CohortError, format_time, now_utc
from oggmhub.storage import images as home_images
from oggmhub.storage.table import used_bytes
from oggmhub.user_folders import home_path

KUBERNETES_NOTE = (
    "this hub keeps members' homes where it cannot read them (on Kubernetes each home is the "
    "PersistentVolumeClaim home-<username>, kept when the cohort closes): export them with your "
    "storage's snapshots; the hub deletes no home it has not exported"
)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_homes(homes_dir, exports_dir, cohort, usernames, by="", now=None):
    """Archive the members' homes; the export record (id, at, sha256, bytes, members, missing, by).

    Blocking (run it in a thread). Raises :class:`CohortError` when homes cannot be read here.
    """
    if not homes_dir:
        raise CohortError(f"exports: {KUBERNETES_NOTE}")
    now = now or now_utc()
    export_id = now.strftime("%Y%m%dT%H%M%SZ")
    os.makedirs(exports_dir, mode=0o700, exist_ok=True)
    path = os.path.join(exports_dir, f"{cohort}-{export_id}.tar.gz")
    if os.path.exists(path):
        raise CohortConflict(f"an export of cohort {cohort!r} was made this second ({export_id}); try again")
    partial = path + ".part"
    exported, missing, usage = [], [], {}
    try:
        with tarfile.open(partial, "w:gz") as archive:
            for username in usernames:
                home = home_path(homes_dir, username)
                if os.path.isdir(home):
                    archive.add(home, arcname=username)  # symlinks are kept as links
                    exported.append(username)
                    usage[username] = used_bytes(home)
                else:
                    missing.append(username)
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        with tarfile.open(partial, "r:gz") as archive:  # read back whole: a usable archive
            for _ in archive:
                pass
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return {
        "id": export_id, "at": format_time(now), "file": os.path.basename(path), "sha256": _sha256(path),
        "bytes": os.path.getsize(path), "members": exported, "missing": missing, "by": by, "usage": usage,
    }


def export_file(exports_dir, record):
    return os.path.join(exports_dir, record["file"])


def check_deletable(exports_dir, cohort, export_id, sha256, usernames):
    """The export that allows deleting ``usernames``' homes; :class:`CohortConflict` if none."""
    if not cohort.closed:
        raise CohortConflict(f"cohort {cohort.name!r} is open: close it before deleting homes")
    record = next((e for e in cohort.exports if e.get("id") == export_id), None)
    if record is None:
        known = ", ".join(e["id"] for e in cohort.exports) or "none yet"
        raise CohortConflict(f"no export {export_id!r} of cohort {cohort.name!r} (exports: {known}); "
                             "homes are deleted only after an export succeeded")
    if sha256 != record["sha256"]:
        raise CohortConflict(f"export {export_id} has SHA-256 {record['sha256']}, not {sha256!r}: "
                             "download and check the archive first")
    covered = set(record["members"]) | set(record["missing"])
    left_out = [u for u in usernames if u not in covered]
    if left_out:
        raise CohortConflict(f"export {export_id} does not hold the homes of {', '.join(left_out)}; export again")
    path = export_file(exports_dir, record)
    if not os.path.exists(path) or _sha256(path) != record["sha256"]:
        raise CohortConflict(f"the archive of export {export_id} is missing or changed on the hub; export again")
    return record


def delete_homes(homes_dir, usernames):
    """Delete the members' homes (call :func:`check_deletable` first); the usernames deleted."""
    deleted = []
    for username in usernames:
        home = home_path(homes_dir, username)
        if os.path.isdir(home):
            try:
                image = home_images.release(home)  # a quota image: unmounted first
            except OSError as e:
                raise CohortConflict(f"the home of {username} was not deleted: {e}") from None
            shutil.rmtree(home)
            if image:
                os.unlink(image)
            deleted.append(username)
    return deleted
