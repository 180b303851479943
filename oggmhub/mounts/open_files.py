"""The files a mount has open: read whole, or in read-ahead blocks (no libfuse needed).

:class:`WholeFile` serves a small file from one request (or a prefetch);
:class:`ReadAheadFile` a large one in ``block_size`` blocks, fetching the next
``readahead`` blocks in the background while it is read forward. Both answer
``locate(size, offset)`` with ``(bytes, start, length)``: where a read's data lies, so
the FUSE read copies once (:func:`oggmhub.mounts.fuse_operations.make_fuse_class`).
``fetch(start, end)`` returns a future of the bytes.
"""

from __future__ import annotations

import concurrent.futures
import errno
import threading


class WholeFile:
    """A small file, fetched in one request on first read (or prefetched). A fetch of
    another length than the listing said (the object changed) raises ``ESTALE``."""

    def __init__(self, fetch, size, prefetched=None, timeout=None, name="the object"):
        self.fetch, self.size, self.future, self.timeout, self.name = fetch, size, prefetched, timeout, name
        self.data, self.lock = None, threading.Lock()

    def locate(self, size, offset):
        with self.lock:
            if self.data is None:
                data = _prefetched(self.future, self.timeout) if self.future is not None else None
                if data is None:  # none, or it failed: fetched now (a failure, again, raises)
                    data = wait(self.fetch(0, self.size), self.timeout)
                if len(data) != self.size:
                    raise OSError(errno.ESTALE, f"{self.name} changed since it was listed ({self.size} bytes "
                                                f"then, {len(data)} now)")
                self.data = data
        n = max(0, min(size, len(self.data) - offset))
        return self.data, offset, n

    def close(self):
        self.data = None


class ReadAheadFile:
    """A large file read in ``block_size`` blocks; while reading forward, the next
    ``readahead`` blocks are fetched concurrently in the background.

    (fsspec's ``background`` cache would do, but in fsspec 2026.9 it fetches a block
    past the end of the file, which stores answer with HTTP 416, and waits for the
    next block whenever a read ends on a block boundary: fsspec PR #2150.)
    """

    def __init__(self, fetch, size, options):
        self.fetch, self.size = fetch, size
        self.block, self.ahead, self.timeout = options.block_size, options.readahead, options.read_timeout
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
        data = wait(futures[0], self.timeout) if len(futures) == 1 else b"".join(wait(f, self.timeout) for f in futures)
        return data, offset - first * self.block, end - offset

    def close(self):
        with self.lock:
            for future in self.blocks.values():
                future.cancel()
            self.blocks.clear()



def wait(future, timeout):
    """A fetch's bytes within ``timeout`` seconds, else ``OSError(ETIMEDOUT)`` (the fetch
    is abandoned, and the mount serves the next read)."""
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise OSError(errno.ETIMEDOUT, f"the source did not answer within {timeout:g} s") from None


def _prefetched(future, timeout):
    """A prefetch's bytes, or None if it failed or was cancelled (then fetch again); it
    too is waited for ``timeout`` seconds at most (``OSError(ETIMEDOUT)``)."""
    try:
        return wait(future, timeout)
    except OSError as e:
        if e.errno == errno.ETIMEDOUT:
            raise
        return None
    except BaseException:  # noqa: BLE001 - cancelled, or the fetch failed
        return None
