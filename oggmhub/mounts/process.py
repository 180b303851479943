"""Read-only FUSE mounts of datasets, one child process per mount.

fsspec's own ``fsspec.fuse.run`` has no read-only mode and its write path leaves empty
objects behind on GCS, so oggmhub has its own FUSE operations
(:mod:`oggmhub.mounts.fuse_operations`; ``make_operations_class()`` makes their
``ReadOnlyOperations`` mfusepy's once libfuse is loaded): mounted with ``ro`` and refusing
every write with ``EROFS`` itself as well, tuned for read-mostly scientific data
(options: :class:`~oggmhub.mounts.options.DatasetMounts`):

* directory listings come from the store once per directory and are kept
  ``listings_ttl`` seconds; a file's attributes come from its directory's listing, so
  ``ls -l`` of 1,000 files is one request, and reach the kernel with the listing
  (READDIRPLUS: no LOOKUP per file); the kernel keeps attributes and entries
  (``attr_timeout``/``entry_timeout``) and file pages across opens (``kernel_cache``);
* files up to ``small_file_size`` are fetched whole on first read (one request each);
  larger files are read in ``block_size`` blocks, the next ``readahead`` blocks fetched
  in the background while the current one is read; the mount process has malloc reuse
  the memory of freed blocks while a file streams (:mod:`.block_memory`).

Each mount runs in a child process (``python -m oggmhub.mounts.process serve``) with libfuse in
the foreground: a process that loads gcsfs and then lets libfuse daemonise (fork) would
lose gcsfs's event loop thread. The parent waits until the child reports the mount is
live, or reports why not (e.g. the bucket is unreachable), and names the dataset in the
error. :func:`mount_datasets` mounts all of a session's datasets or none;
:func:`unmount_datasets` undoes it; :func:`cleanup_stale_mounts` removes what a crashed
hub left behind.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

from oggmhub.mounts import block_memory
from oggmhub.mounts.fuse_operations import load_fuse, make_fuse_class, make_operations_class, set_kernel_readahead
from oggmhub.mounts.options import MiB, DatasetMounts  # noqa: F401 (MiB: for callers)
from oggmhub.mounts.reachable import Unreachable, check_listing, precheck
from oggmhub.mounts.table import FSNAME_PREFIX, SUBTYPE, mounted

log = logging.getLogger(__name__)


class MountError(RuntimeError):
    """A dataset could not be mounted (or unmounted); the message names it."""

    def __init__(self, dataset, message):
        self.dataset = dataset
        super().__init__(f"dataset {dataset!r}: {message}")


@dataclass
class Mount:
    """A live mount: the dataset's name, where it is, and the process serving it."""

    dataset: str
    mountpoint: str
    pid: int
    process: subprocess.Popen | None = field(default=None, repr=False, compare=False)
    created: tuple = field(default=(), repr=False, compare=False)  # folders made for it


def _serve(spec):
    """Run in the child: check the source is reachable, then serve the mount until unmounted."""
    from oggmhub.session.datasets import Dataset, source_filesystem, source_folder  # not the catalog: starts faster

    status = os.fdopen(spec["status_fd"], "w", buffering=1)

    def report(line):
        try:
            status.write(line + "\n")
            status.close()
        except (OSError, ValueError):
            pass

    _admin_log(spec.get("log_fd"))
    dataset = Dataset(**spec["dataset"])
    options = DatasetMounts(**spec["options"])
    block_memory.keep_freed_blocks(options.block_size, options.readahead + 2)  # see block_memory
    try:
        fs, root = source_filesystem(dataset, listings_expiry_time=options.listings_ttl)
        if not spec.get("checked"):
            _check_reachable(fs, root, dataset, options.timeout)
        ops = make_operations_class()(fs, root, dataset.name, options, on_ready=lambda: report("ready"),
                                      owner=spec.get("owner"), prefix=source_folder(dataset))
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises
        report("error: " + (str(e) or type(e).__name__))
        return 3
    allow_other = options.allow_other if options.allow_other is not None else os.geteuid() == 0
    kwargs = dict(
        foreground=True, nothreads=not options.threads, ro=True, default_permissions=True,
        fsname=FSNAME_PREFIX + dataset.name, subtype=SUBTYPE, kernel_cache=True,
        attr_timeout=options.kernel_ttl, entry_timeout=options.kernel_ttl,
        negative_timeout=options.kernel_ttl, noatime=True,
    )
    if allow_other:
        kwargs["allow_other"] = True
    try:
        make_fuse_class()(ops, spec["mountpoint"], **kwargs)
    except Exception as e:  # noqa: BLE001
        report(f"error: FUSE mount at {spec['mountpoint']} failed: {e}")
        return 4
    return 0


def _admin_log(fd):
    """In the mount's child: warnings (a link skipped) go to ``fd``, the hub's own stderr (its log)."""
    stream = os.fdopen(fd, "w", buffering=1) if fd is not None else sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[%(levelname).1s %(asctime)s oggmhub-mount] %(message)s"))
    logger = logging.getLogger("oggmhub.mounts")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _raise_readahead(mountpoint, options):
    """Raise the kernel's read-ahead on a live mount. Not fatal: logged and left."""
    if not options.kernel_readahead_kb:
        return
    why = set_kernel_readahead(mountpoint, options.kernel_readahead_kb)
    if why:
        log.info("mount %s: read-ahead left at the kernel's default (%s)", mountpoint, why)


def _check_reachable(fs, root, dataset, timeout):
    """List the dataset's root within ``timeout`` seconds or raise naming the problem."""
    check_listing(fs, root, dataset, timeout)


# --- mounting from the hub side ---------------------------------------------------


def fuse_available():
    """``(True, "")`` if FUSE mounts can be made here, else ``(False, why)``."""
    if not os.path.exists("/dev/fuse"):
        return False, "/dev/fuse does not exist"
    if not fusermount():
        return False, "neither fusermount3 nor fusermount is installed (Debian: fuse3)"
    try:
        load_fuse()
    except RuntimeError as e:
        return False, str(e)
    return True, ""


def fusermount():
    return shutil.which("fusermount3") or shutil.which("fusermount")


def mount_dataset(dataset, mountpoint, options=None, owner=None, admin_log=True):
    """Mount ``dataset`` read-only at ``mountpoint``; return a :class:`Mount`.

    ``owner``: ``(uid, gid)`` of the only account (besides root) that may read it, for a
    hub whose users have system accounts; None: every user of the machine may.
    ``admin_log``: the mount process writes its warnings (a link leading out of the
    dataset, skipped) to this process's stderr, the hub's log; False (a command whose
    mounts outlive it): nowhere.

    Blocks until the mount is live. Raises :class:`MountError` naming the dataset (and
    leaves nothing behind: no process, no mount, no folder it created) if the source is
    unreachable, the mount point is in use, or FUSE fails.
    """
    from oggmhub.session.datasets import DatasetError, source_filesystem

    options = options if options is not None else DatasetMounts()
    mountpoint = os.path.abspath(mountpoint)
    try:  # here, before a mount process starts (that takes seconds on a busy machine)
        precheck(dataset, options.timeout)
        fs, root = source_filesystem(dataset)
        _check_reachable(fs, root, dataset, options.timeout)
    except Unreachable as e:
        raise MountError(dataset.name, str(e)) from None
    except DatasetError as e:  # e.g. its credentials are not set
        raise MountError(dataset.name, str(e).split(": ", 1)[-1]) from None
    if mountpoint in mounted():
        raise MountError(dataset.name, f"{mountpoint} is already mounted (run cleanup_stale_mounts?)")
    created = _makedirs(mountpoint)
    if os.listdir(mountpoint):
        _remove_dirs(created)
        raise MountError(dataset.name, f"mount point {mountpoint} is not empty")
    read_fd, write_fd = os.pipe()
    admin_fd = os.dup(2) if admin_log else os.open(os.devnull, os.O_WRONLY)  # the child's lines for the admin
    spec = {"dataset": asdict(dataset), "options": options.as_dict(), "mountpoint": mountpoint, "status_fd": write_fd,
            "checked": True, "owner": list(owner) if owner else None, "log_fd": admin_fd}
    log = tempfile.TemporaryFile()  # the child's stderr, shown if it fails
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "oggmhub.mounts.process", "serve", json.dumps(spec)],
            pass_fds=(write_fd, admin_fd), start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
        )
    except OSError:
        os.close(read_fd)
        log.close()
        _remove_dirs(created)
        raise
    finally:
        os.close(write_fd)
        os.close(admin_fd)
    mount = Mount(dataset.name, mountpoint, process.pid, process, tuple(created))
    with log:
        try:
            line = _read_status(read_fd, options.timeout + 10)
        finally:
            os.close(read_fd)
        if line == "ready" and _wait_mounted(mountpoint, process, 10):
            _raise_readahead(mountpoint, options)
            return mount
        reason = line[len("error: "):] if line.startswith("error: ") else (
            "the mount process exited" if process.poll() is not None else
            f"the mount did not come up within {options.timeout + 10:g} s")
        unmount(mount)
        log.seek(0)
        detail = log.read().decode(errors="replace").strip().splitlines()[-3:]
    if detail and not line.startswith("error: "):
        reason += ": " + " / ".join(detail)
    raise MountError(dataset.name, reason)


def _read_status(fd, timeout):
    deadline, data = time.monotonic() + timeout, b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").split("\n", 1)[0].strip()


def _wait_mounted(mountpoint, process, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mountpoint in mounted() and os.path.ismount(mountpoint):
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def mount_datasets(datasets, root, options=None, unavailable=None, owner=None, admin_log=True):
    """Mount each dataset at ``root`` + its catalog mount path; all of them or none.

    Returns the :class:`Mount` list for :func:`unmount_datasets`. Call it before the
    user's server starts; a :class:`MountError` names the dataset that failed. With
    ``unavailable`` (a callable), a dataset whose catalog entry says ``required: false``
    and that cannot be mounted is passed to it, ``unavailable(dataset, error)``, and the
    others are mounted all the same. ``owner``, ``admin_log``: as for :func:`mount_dataset`.
    """
    from oggmhub.session.datasets import local_mount_path

    mounts = []
    try:
        for dataset in datasets:
            try:
                mounts.append(mount_dataset(dataset, local_mount_path(dataset, root), options, owner, admin_log))
            except MountError as e:
                if unavailable is None or getattr(dataset, "required", True):
                    raise
                unavailable(dataset, e)
    except BaseException:
        unmount_datasets(mounts)
        raise
    return mounts


def unmount(mount, timeout=10):
    """Unmount one :class:`Mount`, end its process and remove the folders made for it."""
    path = mount.mountpoint
    if path in mounted():
        _fusermount_u(path, mount.dataset)
    process = mount.process
    if process is not None:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    elif _alive(mount.pid):
        _wait_gone(mount.pid, timeout)
    _remove_dirs(mount.created)


def unmount_datasets(mounts, timeout=10):
    """Unmount every mount in ``mounts`` (from :func:`mount_datasets`); errors are
    collected and raised together after all were tried."""
    problems = []
    for mount in reversed(list(mounts)):
        try:
            unmount(mount, timeout)
        except Exception as e:  # noqa: BLE001
            problems.append(f"{mount.dataset} at {mount.mountpoint}: {e}")
    if problems:
        raise MountError(", ".join(m.dataset for m in mounts), "; ".join(problems))


def cleanup_stale_mounts(root, keep=()):
    """Unmount every oggmhub mount under ``root`` except those under a path in ``keep``.

    For a hub (re)start: mounts left by a crash, dead or alive, are removed, and the
    processes serving them end with them. Returns the mount points removed.
    """
    root = os.path.abspath(root)
    keep = [os.path.abspath(k) for k in keep]
    removed = []
    for path, source in mounted().items():
        if not source.startswith(FSNAME_PREFIX):
            continue
        if not (path == root or path.startswith(root.rstrip("/") + "/")):
            continue
        if any(path == k or path.startswith(k.rstrip("/") + "/") for k in keep):
            continue
        _fusermount_u(path, source[len(FSNAME_PREFIX):])
        _remove_dirs((path,))
        removed.append(path)
    return removed


def _fusermount_u(path, dataset):
    """Unmount ``path``: ``fusermount -u``, else lazily (a process still in it)."""
    tool = fusermount()
    commands = [[tool, "-u", path], [tool, "-uz", path]] if tool else []
    errors = []
    for command in [*commands, ["umount", "-l", path]]:
        if path not in mounted():
            return
        result = subprocess.run(command, capture_output=True, text=True)
        errors.append(result.stderr.strip() or f"{command[0]} exited {result.returncode}")
    if path in mounted():
        raise MountError(dataset, f"could not unmount {path}: {'; '.join(errors)}")


def _makedirs(path):
    """``os.makedirs``, returning the folders it created, deepest first."""
    created, head = [], path
    while not os.path.exists(head):
        created.append(head)
        head = os.path.dirname(head)
    os.makedirs(path, exist_ok=True)
    return created


def _remove_dirs(paths):
    for path in paths:
        try:
            os.rmdir(path)
        except OSError:
            break


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "serve":
        return _serve(json.loads(argv[1]))
    print("usage: python -m oggmhub.mounts.process serve SPEC_JSON (started by oggmhub itself)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
