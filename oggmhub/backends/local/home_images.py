"""Home quotas on the local hub: each home is an ext4 image file, loop-mounted at the home.

Why an image per home (docs/storage.md): it needs only loop devices and e2fsprogs, so it
enforces a quota on kernels built without ``CONFIG_QUOTA`` (this project's test machine)
as on stock ones; the writer gets ``ENOSPC`` at its own quota and nobody else notices;
``df`` in the session shows the user's own size and use; and the image is one file an
admin can move, back up or check (``e2fsck``).

Images live in ``<data dir>/home-images/<folder name>.img`` (root's alone), sparse: a
home takes on the disk what it holds. Each start (:func:`prepare`, as root):

- no image yet: one is made, ``quota`` large, owned by the user's account; a plain home
  that already holds files is copied into it first, then emptied (nothing is lost: if the
  copy fails, the image goes and the plain home stays);
- not mounted: ``e2fsck -p`` (a damaged image is refused in one sentence; the data is
  kept; the log says what ``e2fsck`` said), then ``mount -o loop,nodev,nosuid``;
- a quota the image does not match resizes it (``resize2fs``): a larger one grows it,
  online where the hub may (``CAP_SYS_RESOURCE``), else unmounted while no process holds
  it; a smaller one shrinks it unmounted, if the files fit; else the start is a rescue
  start and nothing is deleted.

Homes stay mounted when their server stops, so that tool tasks and cohort exports find
them; :func:`unmount` releases one (the tests, an admin).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from oggmhub.storage import usage as home_usage
from oggmhub.storage.images import IMAGES, image_path
from oggmhub.storage.quotas import human

BLOCK = 4096


class HomeImageError(Exception):
    """A home that cannot be used; ``str()`` is the sentence the user sees, ``detail``
    what the admin reads in the log."""

    def __init__(self, message, detail=""):
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True)
class HomeState:
    """A mounted home: its ``quota``, ``size`` (what ``df`` shows), ``used`` and
    ``available`` bytes, and whether this start is a ``rescue`` start."""

    quota: int
    size: int
    used: int
    available: int
    rescue: bool


_PATH = {**os.environ, "PATH": os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin", "/sbin"])}


def _run(*cmd, check=True):
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_PATH)  # e2fsprogs live in sbin
    if check and result.returncode != 0:
        raise HomeImageError(f"{cmd[0]} failed", f"{' '.join(cmd)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def mount_source(path):
    """The device mounted exactly at ``path`` (e.g. ``/dev/loop3``), or None."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")
            if point == path:
                return fields[fields.index("-") + 2]
    return None


def backing_file(device):
    """The image file behind a loop ``device``, or None."""
    name = os.path.basename(device or "")
    try:
        with open(f"/sys/block/{name}/loop/backing_file") as f:
            return f.read().strip()
    except OSError:
        return None


def mounted_images(data_dir):
    """``{image path: mount point}`` of the home images of ``data_dir`` mounted now."""
    folder = os.path.realpath(os.path.join(data_dir, IMAGES))
    found = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            source = fields[fields.index("-") + 2]
            image = backing_file(source) if source.startswith("/dev/loop") else None
            if image and os.path.dirname(image) == folder:
                found[image] = fields[4].encode().decode("unicode_escape")
    return found


def may_grow(data_dir, extra=0):
    """Bytes the mounted home images of ``data_dir`` may still claim on the disk (their
    apparent size less what they hold), plus ``extra``."""
    total = extra
    for image in mounted_images(data_dir):
        try:
            st = os.stat(image)
        except OSError:
            continue
        total += max(0, st.st_size - st.st_blocks * 512)
    return total


def _fs_size(home):
    st = os.statvfs(home)
    return st.f_blocks * st.f_frsize, (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_bavail * st.f_frsize


def _round(size):
    return -(-int(size) // BLOCK) * BLOCK


def _make(image, size, owner):
    os.makedirs(os.path.dirname(image), mode=0o700, exist_ok=True)
    with open(image, "xb") as f:  # never over an existing image
        f.truncate(_round(size))
    uid, gid = owner
    try:
        _run("mkfs.ext4", "-q", "-F", "-m", "0", "-b", str(BLOCK), "-L", "home", "-E", f"root_owner={uid}:{gid}", image)
    except BaseException:
        os.unlink(image)
        raise


def _mount(image, home, log):
    fsck = _run("e2fsck", "-p", image, check=False)  # 0: clean, 1/2: fixed; 4 and up: not fixed
    if fsck.returncode >= 4:
        raise HomeImageError("damaged", f"e2fsck -p {image} (exit {fsck.returncode}): {(fsck.stdout + fsck.stderr).strip()}")
    if fsck.returncode:
        log.warning("home image %s was repaired by e2fsck: %s", image, fsck.stdout.strip())
    _run("mount", "-o", "loop,nodev,nosuid,noatime", image, home)
    # direct I/O from the loop device to the image: no second copy in the page cache, and
    # writes as fast as into a plain folder (benchmarks/storage.py); where refused, buffered
    _run("losetup", "--direct-io=on", mount_source(home), check=False)
    _hide_lost_and_found(home)


def _hide_lost_and_found(home):
    """Remove mkfs's empty ``lost+found`` (root's, unreadable to the user, yet listed in
    JupyterLab in every home); e2fsck makes it again should it ever need one."""
    try:
        os.rmdir(os.path.join(home, "lost+found"))
    except OSError:
        pass  # absent, or holding what e2fsck recovered: kept for the admin


def _can_resize_online():
    """Whether this process may grow a mounted ext4 (it needs CAP_SYS_RESOURCE, which some
    sandboxes, this project's test machine among them, withhold even from root)."""
    with open("/proc/self/status") as f:
        caps = next(line for line in f if line.startswith("CapEff:")).split()[1]
    return bool(int(caps, 16) >> 24 & 1)


def _resize(image, home, size, log):
    """Grow a mounted image online where allowed, else resize it unmounted if nothing
    holds it (a shrink always is); False if it cannot be done now."""
    current = os.stat(image).st_size
    if size > current and _can_resize_online():
        with open(image, "r+b") as f:
            f.truncate(size)
        device = mount_source(home)
        _run("losetup", "-c", device)
        _run("resize2fs", device)
        return True
    if _run("umount", home, check=False).returncode != 0:
        log.info("home image %s not resized now: it is in use; the next start tries again", image)
        return False
    try:
        fsck = _run("e2fsck", "-f", "-p", image, check=False)  # 1 and 2: fixed; 4 and up: not
        if fsck.returncode >= 4:
            raise HomeImageError("damaged", f"e2fsck -f -p {image} (exit {fsck.returncode}): {fsck.stdout.strip()}")
        if size > current:
            with open(image, "r+b") as f:
                f.truncate(size)
            _run("resize2fs", image)
        elif _run("resize2fs", image, f"{size // 1024}K", check=False).returncode == 0:
            with open(image, "r+b") as f:
                f.truncate(size)
    finally:
        _mount(image, home, log)
    return True


def _calibrate(image, home, quota, log):
    """Size the image so that ``df`` shows ``quota`` (ext4 keeps part of an image for
    itself: 15% of 64Mi, 5% of 1Gi); a home over its new quota is left as it is."""
    for _ in range(3):
        size, used, _ = _fs_size(home)
        if abs(size - quota) <= max(quota * 0.005, BLOCK * 16):
            return
        target = _round(os.stat(image).st_size + quota - size)
        if target < os.stat(image).st_size and used > quota * home_usage.FULL:
            return  # would not fit: a rescue start, nothing deleted
        if not _resize(image, home, target, log):
            return


def _migrate(home, image, log):
    """Copy a plain home's files into its new image, then empty the plain home."""
    staging = image[:-len(".img")] + ".staging"
    os.makedirs(staging, mode=0o700, exist_ok=True)
    _run("mount", "-o", "loop,nodev,nosuid", image, staging)
    try:
        _run("cp", "-a", "--one-file-system", home + "/.", staging + "/")
    finally:
        _run("umount", staging, check=False)
        os.rmdir(staging)
    for name in os.listdir(home):
        path = os.path.join(home, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    log.info("home %s moved into its image %s", home, image)


def prepare(data_dir, folder, home, quota, owner, log):
    """Mount ``home`` from its image, sized to ``quota`` bytes, owned by ``owner``
    (uid, gid); return its :class:`HomeState`, or raise :class:`HomeImageError`."""
    image = image_path(data_dir, folder)
    try:
        if mount_source(home) is None:
            if not os.path.exists(image):
                held = home_usage.scan(home).used if os.listdir(home) else 0
                _make(image, max(quota, int(held * 1.25) + 64 * 1024**2) if held else quota, owner)
                if held:
                    try:
                        _migrate(home, image, log)
                    except HomeImageError:
                        os.unlink(image)
                        raise
            os.chown(home, 0, 0)  # the folder under the mount: nobody writes there unnoticed
            os.chmod(home, 0o700)
            _mount(image, home, log)
        os.chown(home, *owner)
        os.chmod(home, 0o700)
        _calibrate(image, home, quota, log)
    except HomeImageError as e:
        log.error("home of %s (%s): %s", folder, image, e.detail or e)
        raise HomeImageError(
            f"Your home could not be opened (its disk image {os.path.basename(image)} is damaged or "
            f"cannot be mounted); your files are kept and an administrator has been told.", e.detail) from None
    size, used, available = _fs_size(home)
    # full: what is left counts, ext4's own share of the image included
    return HomeState(quota, size, used, available, home_usage.needs_rescue(max(used, quota - available), quota))


def unmount(home):
    """Unmount a home mounted from its image; True if it was mounted."""
    if mount_source(home) is None:
        return False
    _run("umount", home)
    return True


def describe(state):
    """One line for the spawn page: ``Home: 1.2 GiB of 10 GiB used``."""
    return f"Home: {human(state.used)} of {human(state.quota)} used"
