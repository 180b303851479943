"""The mount process keeps freed read-ahead blocks for the next ones, and gives them back."""

import subprocess
import sys

import pytest

from oggmhub.mounts import block_memory

STREAM = """
import resource, sys
from oggmhub.mounts import block_memory
tuned = block_memory.keep_freed_blocks(16 * 2**20, 8) if sys.argv[1] == "tuned" else False
chunk = b"x" * 2**18
window = []  # a file streamed in 16 MiB blocks, as a mount reads it: 4 in memory at a time,
for i in range(30):  # each one joined from the HTTP response's pieces
    if i == 8:  # past the first blocks, which are new memory either way
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    window.append(b"".join([chunk] * 64))
    if len(window) > 4:
        window.pop(0)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
window.clear()  # the file is closed
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096
kept = rss()
block_memory.give_back()
print(tuned, faults, kept, rss())
"""


def run(mode):
    out = subprocess.run([sys.executable, "-c", STREAM, mode], capture_output=True, text=True, check=True).stdout
    tuned, faults, kept, after = out.split()
    return tuned == "True", int(faults), int(kept), int(after)


@pytest.mark.skipif(block_memory._libc() is None, reason="needs glibc's malloc (mallopt, malloc_trim)")
def test_streaming_blocks_reuse_memory_and_closing_gives_it_back():
    _, plain_faults, _, _ = run("plain")
    tuned, tuned_faults, kept, after = run("tuned")
    assert tuned
    # after the first blocks, plain malloc still maps and zeroes some afresh (4,096 page
    # faults each); tuned, 22 blocks reuse the memory of earlier ones
    assert plain_faults >= 4096, plain_faults
    assert tuned_faults < 1024, (tuned_faults, plain_faults)
    # the kept blocks are resident until the last file closes; then it is returned
    assert kept - after > 12 * 2**20, (kept, after)


def test_blocks_above_mallocs_limit_are_left_to_it():
    assert block_memory.keep_freed_blocks(64 * 2**20, 4) is False
