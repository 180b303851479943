"""Read-only FUSE mounts of datasets, one child process per mount.

fsspec's own ``fsspec.fuse.run`` has no read-only mode and its write path leaves empty
objects behind on GCS, so this module has its own FUSE operations,
:class:`ReadOnlyOperations`: mounted with ``ro`` and refusing every write with ``EROFS``
itself as well, tuned for read-mostly scientific data:

* directory listings come from the store once per directory and are kept
  ``listings_ttl`` seconds; a file's attributes come from its directory's listing, so
  ``ls -l`` of 1,000 files is one request, and the kernel keeps attributes and entries
  (``attr_timeout``/``entry_timeout``) and file pages across opens (``kernel_cache``);
* files up to ``small_file_size`` are fetched whole on first read (one request each);
  larger files are read in ``block_size`` blocks, the next ``readahead`` blocks fetched
  in the background while the current one is read.

Each mount runs in a child process (``python -m oggmhub.mounts serve``) with libfuse in
the foreground: a process that loads gcsfs and then lets libfuse daemonise (fork) would
lose gcsfs's event loop thread. The parent waits until the child reports the mount is
live, or reports why not (e.g. the bucket is unreachable), and names the dataset in the
error. :func:`mount_datasets` mounts all of a session's datasets or none;
:func:`unmount_datasets` undoes it; :func:`cleanup_stale_mounts` removes what a crashed
hub left behind.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import json
import os
import select
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial

from traitlets import Bool, Float, Integer
from traitlets.config import LoggingConfigurable

FSNAME_PREFIX = "oggmhub:"  # the mount's source in /proc/self/mountinfo
SUBTYPE = "oggmhub"  # its type there is fuse.oggmhub
MiB = 2**20


class MountError(RuntimeError):
    """A dataset could not be mounted (or unmounted); the message names it."""

    def __init__(self, dataset, message):
        self.dataset = dataset
        super().__init__(f"dataset {dataset!r}: {message}")


@dataclass(frozen=True)
class MountOptions:
    """How a dataset is mounted; see :class:`DatasetMounts` for each option's meaning."""

    block_size: int = 16 * MiB
    readahead: int = 2
    small_file_size: int = 4 * MiB
    prefetch_files: int = 8
    listings_ttl: float = 600.0
    kernel_ttl: float = 60.0
    timeout: float = 30.0
    allow_other: bool | None = None  # None: when running as root
    threads: bool = False


@dataclass
class Mount:
    """A live mount: the dataset's name, where it is, and the process serving it."""

    dataset: str
    mountpoint: str
    pid: int
    process: subprocess.Popen | None = field(default=None, repr=False, compare=False)
    created: tuple = field(default=(), repr=False, compare=False)  # folders made for it


# --- the FUSE operations ----------------------------------------------------------


def _fuse():
    try:
        import fuse
    except (ImportError, OSError) as e:  # fusepy missing, or libfuse.so.2 missing
        raise RuntimeError(f"FUSE support needs fusepy and libfuse2 ({e})") from None
    return fuse


def _timestamp(value, default):
    if value is None:
        return default
    if hasattr(value, "timestamp"):
        return value.timestamp()
    if isinstance(value, str):
        from datetime import datetime

        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return default
    return float(value)


def make_operations_class():
    """The operations class (built lazily so importing this module needs no libfuse)."""
    fuse = _fuse()
    FuseOSError = fuse.FuseOSError

    def erofs(*args, **kwargs):
        raise FuseOSError(errno.EROFS)

    class _WholeFile:
        """A small file, fetched in one request on first read (or prefetched)."""

        def __init__(self, fetch, size, prefetched=None):
            self.fetch, self.size, self.future = fetch, size, prefetched
            self.data, self.lock = None, threading.Lock()

        def locate(self, size, offset):
            with self.lock:
                if self.data is None:
                    self.data = _result(self.future) if self.future is not None else None
                    if self.data is None or len(self.data) != self.size:
                        self.data = self.fetch(0, self.size).result()
            n = max(0, min(size, len(self.data) - offset))
            return self.data, offset, n

        def close(self):
            self.data = None

    class _ReadAheadFile:
        """A large file read in ``block_size`` blocks; while reading forward, the next
        ``readahead`` blocks are fetched concurrently in the background.

        (fsspec's ``background`` cache would do, but in fsspec 2026.9 it fetches a block
        past the end of the file, which stores answer with HTTP 416, and waits for the
        next block whenever a read ends on a block boundary: fsspec PR #2150.)
        """

        def __init__(self, fetch, size, options):
            self.fetch, self.size = fetch, size
            self.block, self.ahead = options.block_size, options.readahead
            self.blocks = {}  # block number -> Future of its bytes
            self.last = -2  # the last block read
            self.lock = threading.Lock()

        def locate(self, size, offset):
            end = min(offset + size, self.size)
            if offset >= end:
                return b"", 0, 0
            first, last = offset // self.block, (end - 1) // self.block
            forward = first in (self.last, self.last + 1) or offset == 0
            wanted = range(first, last + 1 + (self.ahead if forward else 0))
            with self.lock:
                for n in wanted:
                    start = n * self.block
                    if n not in self.blocks and start < self.size:
                        self.blocks[n] = self.fetch(start, min(start + self.block, self.size))
                for n in [n for n in self.blocks if n < first - 1 or n > wanted[-1]]:
                    self.blocks.pop(n).cancel()
                futures = [self.blocks[n] for n in range(first, last + 1)]
                self.last = last
            data = futures[0].result() if len(futures) == 1 else b"".join(f.result() for f in futures)
            return data, offset - first * self.block, end - offset

        def close(self):
            with self.lock:
                for future in self.blocks.values():
                    future.cancel()
                self.blocks.clear()

    class ReadOnlyOperations(fuse.Operations):
        """FUSE operations serving ``root`` on ``fs`` read-only (every write: EROFS)."""

        use_ns = True

        def __init__(self, fs, root, dataset, options=MountOptions(), on_ready=None):
            self.fs, self.dataset, self.options = fs, dataset, options
            self.root = root.rstrip("/")
            self.on_ready = on_ready
            self.uid, self.gid = os.getuid(), os.getgid()
            self.started = time.time()
            self._listings = {}  # directory (store path) -> (time, {name: info}, [names])
            self._lock = threading.Lock()
            self._handles, self._next = {}, 1
            self._prefetched = {}  # store path of a small file -> Future of its bytes
            self._scans = {}  # directory (store path) -> index of the file opened last
            self._pool = ThreadPoolExecutor(8, thread_name_prefix="oggmhub-fetch")

        # fetching: on the filesystem's own event loop when it has one, else in threads
        def _fetch(self, path, start, end):
            from fsspec.asyn import AsyncFileSystem

            if isinstance(self.fs, AsyncFileSystem):
                coro = self.fs._cat_file(path, start=start, end=end)
                return asyncio.run_coroutine_threadsafe(coro, self.fs.loop)
            return self._pool.submit(self.fs.cat_file, path, start=start, end=end)

        # paths and attributes
        def _store(self, path):
            path = path.strip("/")
            return f"{self.root}/{path}" if path else self.root

        def _listing(self, store_path):
            """``(entries by name, names in order)`` of a directory, or ``(None, None)``."""
            now = time.monotonic()
            with self._lock:
                hit = self._listings.get(store_path)
            if hit and now - hit[0] < self.options.listings_ttl:
                return hit[1], hit[2]
            try:
                listed = self.fs.ls(store_path, detail=True)
            except (FileNotFoundError, NotADirectoryError):
                listed = None
            entries = names = None
            if listed is not None:
                prefix = store_path.rstrip("/") + "/"
                entries = {}
                for e in listed:
                    name = e["name"].rstrip("/")
                    name = name[len(prefix):] if name.startswith(prefix) else name.rsplit("/", 1)[-1]
                    if name and "/" not in name:  # some stores list the directory itself
                        entries[name] = e
                names = list(entries)
            with self._lock:
                self._listings[store_path] = (now, entries, names)
            return entries, names

        def _info(self, path):
            path = path.strip("/")
            if not path:
                return {"type": "directory", "size": 0}
            parent, _, name = path.rpartition("/")
            entries, _ = self._listing(self._store(parent))
            if entries is None or name not in entries:
                raise FuseOSError(errno.ENOENT)
            return entries[name]

        def _stat(self, info):
            if info["type"] == "directory":
                mode, size, nlink = stat.S_IFDIR | 0o555, 0, 2
            else:
                mode, size, nlink = stat.S_IFREG | 0o444, int(info.get("size") or 0), 1
            mtime = _timestamp(info.get("mtime") or info.get("updated") or info.get("LastModified"), self.started)
            ctime = _timestamp(info.get("ctime") or info.get("timeCreated"), mtime)
            mtime, ctime = int(mtime * 1e9), int(ctime * 1e9)  # use_ns: nanoseconds
            return {
                "st_mode": mode, "st_nlink": nlink, "st_size": size,
                "st_uid": self.uid, "st_gid": self.gid,
                "st_mtime": mtime, "st_ctime": ctime, "st_atime": mtime,
                "st_blksize": 128 * 1024, "st_blocks": (size + 511) // 512,
            }

        # small files read one after the other, in listing order: fetch the next ones
        def _prefetch_after(self, path):
            parent, _, name = path.strip("/").rpartition("/")
            directory = self._store(parent)
            entries, names = self._listing(directory)
            index = names.index(name) if names and name in entries else -1
            with self._lock:
                previous = self._scans.get(directory)
                self._scans[directory] = index
                if previous is None or index != previous + 1 or self.options.prefetch_files <= 0:
                    return
                for next_name in names[index + 1:index + 1 + self.options.prefetch_files]:
                    info, store = entries[next_name], f"{directory}/{next_name}"
                    size = int(info.get("size") or 0)
                    if info["type"] == "file" and size <= self.options.small_file_size and store not in self._prefetched:
                        self._prefetched[store] = self._fetch(store, 0, size)
                while len(self._prefetched) > 4 * self.options.prefetch_files:
                    self._prefetched.pop(next(iter(self._prefetched))).cancel()

        # reading
        def init(self, path):
            if self.on_ready:
                self.on_ready()

        def getattr(self, path, fh=None):
            return self._stat(self._info(path))

        def readdir(self, path, fh):
            if self._info(path)["type"] != "directory":
                raise FuseOSError(errno.ENOTDIR)
            _, names = self._listing(self._store(path))
            return [".", "..", *(names or ())]

        def access(self, path, amode):
            if amode & os.W_OK:
                raise FuseOSError(errno.EROFS)
            self._info(path)
            return 0

        def open(self, path, flags):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC):
                raise FuseOSError(errno.EROFS)
            info = self._info(path)
            if info["type"] == "directory":
                raise FuseOSError(errno.EISDIR)
            size, store = int(info.get("size") or 0), self._store(path)
            fetch = partial(self._fetch, store)
            if size <= self.options.small_file_size:
                with self._lock:
                    prefetched = self._prefetched.pop(store, None)
                handle = _WholeFile(fetch, size, prefetched)
                self._prefetch_after(path)
            else:
                handle = _ReadAheadFile(fetch, size, self.options)
            with self._lock:
                fh, self._next = self._next, self._next + 1
                self._handles[fh] = handle
            return fh

        def locate(self, fh, size, offset):
            """``(bytes, start, length)``: where the data of a read lies (no copy made)."""
            try:
                return self._handles[fh].locate(size, offset)
            except FileNotFoundError:
                raise FuseOSError(errno.ENOENT) from None
            except OSError as e:
                raise FuseOSError(e.errno or errno.EIO) from None

        def read(self, path, size, offset, fh):
            data, start, n = self.locate(fh, size, offset)
            return data[start:start + n]

        def release(self, path, fh):
            with self._lock:
                handle = self._handles.pop(fh, None)
            if handle is not None:
                handle.close()
            return 0

        def statfs(self, path):
            return {"f_bsize": 128 * 1024, "f_frsize": 128 * 1024, "f_blocks": 0, "f_bfree": 0,
                    "f_bavail": 0, "f_files": 0, "f_ffree": 0, "f_namemax": 1024}

        def readlink(self, path):
            raise FuseOSError(errno.EINVAL)

        def getxattr(self, path, name, position=0):
            raise FuseOSError(errno.ENODATA)

        def listxattr(self, path):
            return []

        # not implemented, so libfuse answers ENOSYS once and the kernel stops asking:
        # saves a round trip on every close() (flush) and every listing (opendir)
        flush = opendir = releasedir = fsync = fsyncdir = lock = bmap = ioctl = None

        # every change: refused (the kernel already refuses them on an ``ro`` mount)
        create = write = truncate = mkdir = rmdir = unlink = rename = erofs
        chmod = chown = utimens = symlink = link = mknod = setxattr = removexattr = erofs

    return ReadOnlyOperations


def _result(future):
    """A prefetch's bytes, or None if it failed or was cancelled (then fetch again)."""
    try:
        return future.result()
    except BaseException:  # noqa: BLE001 - cancelled, or the fetch failed
        return None


def make_fuse_class():
    """fusepy's ``FUSE`` with a read that copies straight from the fetched block.

    fusepy's own ``read`` takes the operation's return value (a new ``bytes`` slice)
    and copies it into libfuse's buffer; this one asks :meth:`locate` where the bytes
    are and copies once, from there.
    """
    fuse = _fuse()

    class _FUSE(fuse.FUSE):
        def read(self, path, buf, size, offset, fip):
            data, start, n = self.operations.locate(fip.contents.fh, size, offset)
            if n:
                ctypes.memmove(buf, ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value + start, n)
            return n

    return _FUSE


# --- the child process ------------------------------------------------------------


def _serve(spec):
    """Run in the child: check the source is reachable, then serve the mount until unmounted."""
    from .catalog import Dataset
    from .datasets import source_filesystem

    status = os.fdopen(spec["status_fd"], "w", buffering=1)

    def report(line):
        try:
            status.write(line + "\n")
            status.close()
        except (OSError, ValueError):
            pass

    dataset = Dataset(**spec["dataset"])
    options = MountOptions(**spec["options"])
    try:
        fs, root = source_filesystem(dataset, listings_expiry_time=options.listings_ttl)
        _check_reachable(fs, root, dataset, options.timeout)
        ops = make_operations_class()(fs, root, dataset.name, options, on_ready=lambda: report("ready"))
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


def _check_reachable(fs, root, dataset, timeout):
    """List the dataset's root within ``timeout`` seconds or raise naming the problem."""
    from fsspec.asyn import AsyncFileSystem, sync

    where = dataset.source + (f" at {dataset.endpoint}" if dataset.endpoint else "")
    try:
        if isinstance(fs, AsyncFileSystem):
            sync(fs.loop, fs._ls, root, timeout=timeout)
        else:
            fs.ls(root)
    except FileNotFoundError:
        raise RuntimeError(f"{where} does not exist (no such bucket or folder)") from None
    except Exception as e:  # noqa: BLE001
        if type(e).__name__ in ("FSTimeoutError", "TimeoutError"):
            raise RuntimeError(f"{where} did not answer within {timeout:g} s (unreachable?)") from None
        raise RuntimeError(f"cannot list {where}: {e}") from None


# --- mounting from the hub side ---------------------------------------------------


def fuse_available():
    """``(True, "")`` if FUSE mounts can be made here, else ``(False, why)``."""
    if not os.path.exists("/dev/fuse"):
        return False, "/dev/fuse does not exist"
    if not fusermount():
        return False, "neither fusermount3 nor fusermount is installed (Debian: fuse3)"
    try:
        _fuse()
    except RuntimeError as e:
        return False, str(e)
    return True, ""


def fusermount():
    return shutil.which("fusermount3") or shutil.which("fusermount")


def mount_dataset(dataset, mountpoint, options=MountOptions()):
    """Mount ``dataset`` read-only at ``mountpoint``; return a :class:`Mount`.

    Blocks until the mount is live. Raises :class:`MountError` naming the dataset (and
    leaves nothing behind: no process, no mount, no folder it created) if the source is
    unreachable, the mount point is in use, or FUSE fails.
    """
    mountpoint = os.path.abspath(mountpoint)
    if mountpoint in mounted():
        raise MountError(dataset.name, f"{mountpoint} is already mounted (run cleanup_stale_mounts?)")
    created = _makedirs(mountpoint)
    if os.listdir(mountpoint):
        _remove_dirs(created)
        raise MountError(dataset.name, f"mount point {mountpoint} is not empty")
    read_fd, write_fd = os.pipe()
    spec = {"dataset": asdict(dataset), "options": asdict(options), "mountpoint": mountpoint, "status_fd": write_fd}
    log = tempfile.TemporaryFile()  # the child's stderr, shown if it fails
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "oggmhub.mounts", "serve", json.dumps(spec)],
            pass_fds=(write_fd,), start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
        )
    except OSError:
        os.close(read_fd)
        log.close()
        _remove_dirs(created)
        raise
    finally:
        os.close(write_fd)
    mount = Mount(dataset.name, mountpoint, process.pid, process, tuple(created))
    with log:
        try:
            line = _read_status(read_fd, options.timeout + 10)
        finally:
            os.close(read_fd)
        if line == "ready" and _wait_mounted(mountpoint, process, 10):
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


def mount_datasets(datasets, root, options=MountOptions()):
    """Mount each dataset at ``root`` + its catalog mount path; all of them or none.

    Returns the :class:`Mount` list for :func:`unmount_datasets`. Call it before the
    user's server starts; a :class:`MountError` names the dataset that failed.
    """
    from .datasets import local_mount_path

    mounts = []
    try:
        for dataset in datasets:
            mounts.append(mount_dataset(dataset, local_mount_path(dataset, root), options))
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


def mounted():
    """``{mount point: source}`` of this machine's oggmhub FUSE mounts."""
    out = {}
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        if tail[0] == "fuse." + SUBTYPE:
            out[_unescape(fields[4])] = _unescape(tail[1])
    return out


def _unescape(text):
    return text.encode().decode("unicode_escape") if "\\" in text else text


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


# --- configuration, the JupyterHub way --------------------------------------------


class DatasetMounts(LoggingConfigurable):
    """Mount options for a spawner: ``c.DatasetMounts.block_size = 32 * 2**20`` etc."""

    block_size = Integer(
        MountOptions.block_size, config=True,
        help="Bytes fetched per request when reading a large file through a mount.",
    )
    readahead = Integer(
        MountOptions.readahead, config=True,
        help="Blocks fetched ahead, in the background, while a large file is read forward "
             "through a mount (each takes block_size bytes of memory while in flight).",
    )
    small_file_size = Integer(
        MountOptions.small_file_size, config=True,
        help="Files up to this many bytes are fetched whole, in one request, on first read.",
    )
    prefetch_files = Integer(
        MountOptions.prefetch_files, config=True,
        help="When small files of a folder are opened one after the other, in listing "
             "order, fetch this many of the next ones concurrently (0: never).",
    )
    listings_ttl = Float(
        MountOptions.listings_ttl, config=True,
        help="Seconds a directory listing (and the attributes of its files) is reused "
             "before the store is asked again; new objects in a bucket show up after this.",
    )
    kernel_ttl = Float(
        MountOptions.kernel_ttl, config=True,
        help="Seconds the kernel caches attributes, names and missing names of a mount.",
    )
    timeout = Float(
        MountOptions.timeout, config=True,
        help="Seconds to wait for a dataset's source to answer before the mount (and the "
             "spawn) fails with an error naming the dataset.",
    )
    threads = Bool(
        MountOptions.threads, config=True,
        help="Run libfuse's multi-threaded loop. Single-threaded (the default) measured "
             "faster here: the Python operations share one interpreter lock anyway.",
    )
    allow_other = Bool(
        None, allow_none=True, config=True,
        help="Let users other than the mounting one read the mount (FUSE allow_other). "
             "None: yes when the hub runs as root; otherwise /etc/fuse.conf must have "
             "user_allow_other.",
    )

    def options(self):
        return MountOptions(
            block_size=self.block_size, readahead=self.readahead,
            small_file_size=self.small_file_size, prefetch_files=self.prefetch_files,
            listings_ttl=self.listings_ttl, kernel_ttl=self.kernel_ttl, timeout=self.timeout,
            threads=self.threads, allow_other=self.allow_other,
        )

    def mount(self, datasets, root):
        """:func:`mount_datasets` with these options."""
        return mount_datasets(datasets, root, self.options())

    def unmount(self, mounts):
        """:func:`unmount_datasets`."""
        return unmount_datasets(mounts)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "serve":
        return _serve(json.loads(argv[1]))
    print("usage: python -m oggmhub.mounts serve SPEC_JSON (started by oggmhub itself)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
