"""The read-only FUSE operations that serve one dataset (run in the mount's child process).

:class:`ReadOnlyOperations` is plain Python; :func:`make_operations_class` and
:func:`make_fuse_class` load libfuse (mfusepy on libfuse3, else libfuse2) when called, so
importing this module needs none. Every write, create, rename, chmod or delete fails with
``EROFS``; reads go through fsspec with whole-file fetches for small files and read-ahead
blocks for large ones (:mod:`.open_files`; sizes from :class:`~.options.DatasetMounts`).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from oggmhub.mounts import block_memory
from oggmhub.mounts.open_files import ReadAheadFile, WholeFile
from oggmhub.mounts.options import DatasetMounts
from oggmhub.mounts.source_links import LocalSource

log = logging.getLogger(__name__)


def load_fuse():
    """mfusepy on libfuse3 where the machine has it (Debian's ``fuse3``), else libfuse2.

    libfuse3 lets the kernel send reads of up to 1 MiB (libfuse2: 128 KiB), so a large
    file streams in an eighth of the calls into Python (see ``kernel_readahead_kb``).
    """
    from ctypes.util import find_library

    if "FUSE_LIBRARY_PATH" not in os.environ and find_library("fuse3"):
        os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")  # mfusepy looks for libfuse2 first
    try:
        import mfusepy as fuse
    except (ImportError, OSError) as e:  # mfusepy missing, or no libfuse at all
        raise RuntimeError(f"FUSE support needs mfusepy and libfuse3 or libfuse2 ({e})") from None
    return fuse


def set_kernel_readahead(mountpoint, kib):
    """Let the kernel read ahead ``kib`` KiB on the live mount at ``mountpoint`` (its
    backing device's ``read_ahead_kb``; the kernel's default is 128). Returns None, or
    why it could not (not root, a read-only /sys)."""
    device = os.stat(mountpoint).st_dev  # answered only once FUSE's INIT (which resets it) is done
    path = f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}/read_ahead_kb"
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(str(int(kib)))
    except OSError as e:
        return f"cannot write {path}: {e.strerror}"
    return None


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


class FuseOSError(OSError):
    """An error the operations answer with (``errno``), as mfusepy's ``FuseOSError``."""

    def __init__(self, code):
        super().__init__(code, os.strerror(code))


class ReadOnlyOperations:
    """FUSE operations serving ``root`` on ``fs`` read-only (every write: EROFS).

    Plain Python: :func:`make_operations_class` makes it mfusepy's ``Operations`` once
    libfuse is loaded, with mfusepy's ``FuseOSError`` for the errors it raises.
    """

    FuseOSError = FuseOSError  # mfusepy's, in the class make_operations_class() returns

    use_ns = True
    # st_blksize: programs read this much at a time (Python's open() buffers this much), so
    # the kernel asks the mount for it in one read; libfuse3's largest read (libfuse2: 128 KiB)
    io_size = 128 * 1024

    def __init__(self, fs, root, dataset, options=None, on_ready=None, owner=None, prefix=""):
        self.fs, self.dataset, self.options = fs, dataset, options if options is not None else DatasetMounts()
        self.root = root.rstrip("/")
        # the folder of the mount where the source appears (a download cache's <host>/<path>:
        # oggmhub.session.datasets.source_folder); the folders above it hold only it
        self.prefix = [p for p in prefix.split("/") if p]
        self.on_ready = on_ready
        # owner (uid, gid): a user's own mount, which no other account may read (the
        # kernel checks these modes: default_permissions); else everyone may
        self.uid, self.gid = owner if owner else (os.getuid(), os.getgid())
        self.dir_mode, self.file_mode = (0o500, 0o400) if owner else (0o555, 0o444)
        self.started = time.time()
        self._listings = {}  # directory (store path) -> (time, {name: info}, [names])
        self._lock = threading.Lock()
        self._handles, self._next = {}, 1
        self._prefetched = {}  # store path of a small file -> (its listed size, Future of its bytes)
        self._scans = {}  # directory (store path) -> index of the file opened last
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="oggmhub-fetch")
        from fsspec.implementations.local import LocalFileSystem

        # a local folder: links leading out of it are neither listed nor served (source_links)
        self.local = LocalSource(root, dataset) if isinstance(fs, LocalFileSystem) else None

    # fetching: on the filesystem's own event loop when it has one, else in threads
    def _fetch(self, path, start, end):
        from fsspec.asyn import AsyncFileSystem

        if self.local is not None:
            return self._pool.submit(self.local.read, path, start, end)
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
            if self.local is not None and not self.local.folder_allowed(store_path):
                raise FileNotFoundError(store_path)
            listed = self.fs.ls(store_path, detail=True)
            if self.local is not None:
                listed = self.local.keep(listed)
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
            raise self.FuseOSError(errno.ENOENT)
        entry = entries[name]
        if entry.get("type") == "file" and entry.get("size") is None:
            # an HTTP listing (a web server's index page) gives no sizes: ask once
            try:
                entry = {**entry, **self.fs.info(self._store(path))}
            except OSError:
                raise self.FuseOSError(errno.ENOENT) from None
            with self._lock:
                entries[name] = entry
        return entry

    def _stat(self, info):
        if info["type"] == "directory":
            mode, size, nlink = stat.S_IFDIR | self.dir_mode, 0, 2
        else:
            mode, size, nlink = stat.S_IFREG | self.file_mode, int(info.get("size") or 0), 1
        mtime = _timestamp(info.get("mtime") or info.get("updated") or info.get("LastModified"), self.started)
        ctime = _timestamp(info.get("ctime") or info.get("timeCreated"), mtime)
        mtime, ctime = int(mtime * 1e9), int(ctime * 1e9)  # use_ns: nanoseconds
        return {
            "st_mode": mode, "st_nlink": nlink, "st_size": size,
            "st_uid": self.uid, "st_gid": self.gid,
            "st_mtime": mtime, "st_ctime": ctime, "st_atime": mtime,
            "st_blksize": self.io_size, "st_blocks": (size + 511) // 512,
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
                size = info.get("size")  # None: not known yet (an HTTP listing), not fetched
                if info["type"] == "file" and size is not None and int(size) <= self.options.small_file_size \
                        and store not in self._prefetched:
                    self._prefetched[store] = (int(size), self._fetch(store, 0, int(size)))
            while len(self._prefetched) > 4 * self.options.prefetch_files:
                self._prefetched.pop(next(iter(self._prefetched)))[1].cancel()

    # reading
    def init(self, path):
        if self.on_ready:
            self.on_ready()

    def _inner(self, path):
        """``(path in the source, None)``, or ``(None, child)`` for a folder above the
        source's folder (``prefix``) with its one child; ``ENOENT`` beside it."""
        parts, n = [p for p in path.split("/") if p], len(self.prefix)
        if parts[:n] == self.prefix:
            return "/".join(parts[n:]), None
        if len(parts) < n and self.prefix[:len(parts)] == parts:
            return None, self.prefix[len(parts)]
        raise self.FuseOSError(errno.ENOENT)

    def getattr(self, path, fh=None):
        path, above = self._inner(path)
        return self._stat({"type": "directory"} if above else self._info(path))

    def readdir(self, path, fh):
        path, above = self._inner(path)
        if above:
            return [".", "..", above]
        if self._info(path)["type"] != "directory":
            raise self.FuseOSError(errno.ENOTDIR)
        _, names = self._listing(self._store(path))
        return [".", "..", *(names or ())]

    def readdir_attrs(self, path, offset=0):
        """``(name, attributes or None)`` of the entries of a folder from the ``offset``-th on,
        lazily: :meth:`readdir` with attributes from the same listing, for the kernel's
        READDIRPLUS (then it asks no LOOKUP per file)."""
        inner, above = self._inner(path)
        if above:
            entries, names = {above: {"type": "directory"}}, [above]
        elif self._info(inner)["type"] != "directory":
            raise self.FuseOSError(errno.ENOTDIR)
        else:
            entries, names = self._listing(self._store(inner))
            names = names or ()
        for index in range(offset, len(names) + 2):
            if index < 2:
                yield ("." if index == 0 else ".."), None
                continue
            entry = entries[names[index - 2]]
            known = entry.get("type") == "directory" or entry.get("size") is not None  # HTTP: no sizes
            yield names[index - 2], self._stat(entry) if known else None

    def access(self, path, amode):
        if amode & os.W_OK:
            raise self.FuseOSError(errno.EROFS)
        path, above = self._inner(path)
        if not above:
            self._info(path)
        return 0

    def open(self, path, flags):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC):
            raise self.FuseOSError(errno.EROFS)
        path, above = self._inner(path)
        if above:
            raise self.FuseOSError(errno.EISDIR)
        info = self._info(path)
        if info["type"] == "directory":
            raise self.FuseOSError(errno.EISDIR)
        size, store = int(info.get("size") or 0), self._store(path)
        fetch = partial(self._fetch, store)
        if size <= self.options.small_file_size:
            with self._lock:
                listed, prefetched = self._prefetched.pop(store, (None, None))
            if prefetched is not None and listed != size:  # fetched for a listing since renewed
                prefetched.cancel()
                prefetched = None
            handle = WholeFile(fetch, size, prefetched, self.options.read_timeout, name=store)
            self._prefetch_after(path)
        else:
            handle = ReadAheadFile(fetch, size, self.options)
        with self._lock:
            fh, self._next = self._next, self._next + 1
            self._handles[fh] = handle
        return fh

    def locate(self, fh, size, offset):
        """``(bytes, start, length)``: where the data of a read lies (no copy made)."""
        try:
            return self._handles[fh].locate(size, offset)
        except FileNotFoundError:
            raise self.FuseOSError(errno.ENOENT) from None
        except OSError as e:
            if e.errno == errno.ESTALE:  # the object changed: its listing (and sizes) is stale too
                log.warning("dataset %s: %s", self.dataset, e.strerror)
                with self._lock:
                    self._listings.clear()
                self.fs.invalidate_cache()  # fsspec's own listings
            raise self.FuseOSError(e.errno or errno.EIO) from None

    def read(self, path, size, offset, fh):
        data, start, n = self.locate(fh, size, offset)
        return data[start:start + n]

    def release(self, path, fh):
        with self._lock:
            handle = self._handles.pop(fh, None)
            idle = not self._handles
        if handle is not None:
            handle.close()
            if idle and isinstance(handle, ReadAheadFile):
                block_memory.give_back()  # the blocks kept for reuse
        return 0

    def statfs(self, path):
        return {"f_bsize": 128 * 1024, "f_frsize": 128 * 1024, "f_blocks": 0, "f_bfree": 0,
                "f_bavail": 0, "f_files": 0, "f_ffree": 0, "f_namemax": 1024}

    def readlink(self, path):
        raise self.FuseOSError(errno.EINVAL)

    def getxattr(self, path, name, position=0):
        raise self.FuseOSError(errno.ENODATA)

    def listxattr(self, path):
        return []

    # not implemented, so libfuse answers ENOSYS once and the kernel stops asking:
    # saves a round trip on every close() (flush) and every listing (opendir)
    flush = opendir = releasedir = fsync = fsyncdir = lock = bmap = ioctl = None

    # every change: refused (the kernel already refuses them on an ``ro`` mount)
    def _refuse(self, *args, **kwargs):
        raise self.FuseOSError(errno.EROFS)

    create = write = truncate = mkdir = rmdir = unlink = rename = _refuse
    chmod = chown = utimens = symlink = link = mknod = setxattr = removexattr = _refuse


def make_operations_class():
    """:class:`ReadOnlyOperations` as mfusepy ``Operations``, raising mfusepy's ``FuseOSError``
    (loads libfuse: called in the mount process only)."""
    fuse = load_fuse()
    io_size = 2**20 if fuse.fuse_version_major >= 3 else 128 * 1024
    return type("ReadOnlyOperations", (ReadOnlyOperations, fuse.Operations),
                {"FuseOSError": fuse.FuseOSError, "io_size": io_size})


READDIR_PLUS, FILL_DIR_PLUS = 1, 2  # libfuse3's FUSE_READDIR_PLUS and FUSE_FILL_DIR_PLUS


def make_fuse_class():
    """mfusepy's ``FUSE`` with a read that copies straight from the fetched block.

    mfusepy's own ``read`` takes the operation's return value (a new ``bytes`` slice)
    and copies it into libfuse's buffer; this one asks :meth:`locate` where the bytes
    are and copies once, from there. Its ``readdir`` answers the kernel's READDIRPLUS
    with every entry's attributes (mfusepy's gives names only), so reading the files of
    a folder just listed costs no LOOKUP round trip per file.
    """
    fuse = load_fuse()

    class _FUSE(fuse.FUSE):
        def readdir_fuse_3(self, path, buf, filler, offset, fip, flags):
            plus = FILL_DIR_PLUS if flags & READDIR_PLUS else 0
            st = fuse.c_stat()
            entries = self.operations.readdir_attrs(path.decode(self.encoding, self.errors), offset)
            # offsets (an entry's index + 1) in every call: libfuse3 passes attributes on to
            # the kernel only then, and a listing read in several calls stays one numbering
            for index, (name, attrs) in enumerate(entries, offset):
                if attrs:
                    ctypes.memset(ctypes.byref(st), 0, ctypes.sizeof(st))
                    fuse.set_st_attrs(st, attrs, use_ns=True)
                if filler(buf, name.encode(self.encoding, self.errors), st if attrs else None, index + 1,
                          plus if attrs else 0):
                    break
            return 0

        def read(self, path, buf, size, offset, fip):
            data, start, n = self.operations.locate(fip.contents.fh, size, offset)
            if n:
                ctypes.memmove(buf, ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value + start, n)
            return n

    return _FUSE
