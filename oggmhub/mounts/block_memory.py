"""Memory for a mount's read-ahead blocks: reused while a file streams, given back after.

Each block a mount fetches is a fresh ``bytes`` of ``block_size`` bytes. glibc's malloc
serves such a size with its own ``mmap`` and unmaps it when freed (or trims it off the
heap), so every block costs the kernel a page fault and a zeroed page per 4 KiB: a tenth
of a mount's CPU time when streaming, measured with ``perf``. :func:`keep_freed_blocks`
has malloc keep freed blocks for the next ones instead, and :func:`give_back` returns
what is free to the system once no file is open. Elsewhere than glibc both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's upper limit on 64-bit machines
SLACK = 2**20  # a block's bytes object is a little larger than the block


@functools.cache
def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc has both; musl has neither
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_blocks(block_size, blocks):
    """Have malloc serve blocks of ``block_size`` bytes from its heap and keep up to
    ``blocks`` of them when freed. Returns True if it took effect (glibc; blocks up to
    32 MiB, above which malloc maps each one anyway)."""
    libc = _libc()
    if libc is None or block_size + SLACK > MMAP_THRESHOLD_MAX:
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(block_size + SLACK))
    ok = ok and libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(max(1, blocks) * (block_size + SLACK)))
    return bool(ok)


def give_back():
    """Return malloc's free memory to the system (after the last file is closed)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(ctypes.c_size_t(0))
