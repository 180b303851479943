"""Reading a dataset bucket: directly with gcsfs, through the FUSE mount, through the cache.

One command, one GCS emulator (fake-gcs-server on 127.0.0.1), one run::

    python benchmarks/datasets.py [--size-mb 200] [--files 1000] [--file-kb 100] [--repeat 5]

Each figure is the median of ``--repeat`` runs; every run is cold (a fresh gcsfs client,
a fresh mount, an empty cache folder) and each repetition runs every way once, so a busy
machine slows them alike.

* A 200 MB object, read two ways each: *streamed* in 1 MiB ``read()`` calls, and *whole*
  into one ``bytes`` (dominated, on a fast loopback, by allocating and faulting in 200 MB):
  (a) directly with gcsfs (``fs.open()`` with gcsfs's defaults; ``cat_file`` for whole),
  (b) with plain ``open()`` through the FUSE mount, (c) through the notebook API
  (``oggmhub.session.datasets.open_dataset``, simplecache) a second time, after a first read
  filled the cache; the bucket requests during (c) are counted (expected: 0).
* 1,000 objects of 100 KB listed and read one after the other through the mount and
  directly with gcsfs (like for like), through the mount from 8 threads, and directly
  as one concurrent ``cat`` batch.

Ratios are speeds relative to direct (``t_direct / t_other``; above 1 is faster than
direct), same access pattern on both sides. The last line is a JSON object:
``fuse_vs_direct`` (target >= 0.8) and ``cached_vs_direct`` (target >= 8) are the
streamed reads; ``*_whole`` the whole-object reads; ``small_files_mount_vs_direct`` the
1,000 files one by one; ``settings`` the mount options (``c.DatasetMounts``) used,
``libfuse`` the library's major version (3: the kernel reads 1 MiB at a time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from support.gcs_emulator import GCSEmulator  # noqa: E402

from oggmhub.mounts import process as mounts  # noqa: E402
from oggmhub.mounts.fuse_operations import load_fuse  # noqa: E402
from oggmhub.catalog import Dataset  # noqa: E402
from oggmhub.session.datasets import open_dataset  # noqa: E402

BUCKET = "bench"
CHUNK = 1 << 20


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median_time(fn, repeat, setup=None, teardown=None):
    times = []
    for _ in range(repeat):
        state = setup() if setup else None
        try:
            t, _ = timed(lambda: fn(state))
        finally:
            if teardown:
                teardown(state)
        times.append(t)
    return statistics.median(times)


def read_posix(path):
    total = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            total += len(chunk)
    return total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--file-kb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--block-mb", type=int, default=mounts.DatasetMounts.block_size.default_value // mounts.MiB)
    parser.add_argument("--readahead", type=int, default=mounts.DatasetMounts.readahead.default_value)
    parser.add_argument("--fuse-threads", type=int, choices=(0, 1), default=int(mounts.DatasetMounts.threads.default_value),
                        help="1: libfuse's multi-threaded loop; 0: single-threaded")
    parser.add_argument("--kernel-readahead-kb", type=int,
                        default=mounts.DatasetMounts.kernel_readahead_kb.default_value,
                        help="the kernel's read-ahead on the mount (KiB; default: %(default)s)")
    args = parser.parse_args(argv)
    options = mounts.DatasetMounts(block_size=args.block_mb * mounts.MiB, readahead=args.readahead,
                                  threads=bool(args.fuse_threads), kernel_readahead_kb=args.kernel_readahead_kb)
    size = args.size_mb * 10**6
    libfuse = load_fuse().fuse_version_major  # the library the mounts use (3: 1 MiB kernel reads)

    with GCSEmulator() as gcs, tempfile.TemporaryDirectory(prefix="oggmhub-bench-") as tmp:
        gcs.create_bucket(BUCKET)
        writer = gcs.filesystem()
        big = os.urandom(size)
        writer.pipe_file(f"{BUCKET}/big.bin", big)
        small = {f"{BUCKET}/small/f{i:04d}.bin": os.urandom(args.file_kb * 1000) for i in range(args.files)}
        writer.pipe(small)
        del writer
        dataset = Dataset(name="bench", title="Benchmark", source=f"gs://{BUCKET}",
                          mount_path="/data/bench", endpoint=gcs.url)
        root = os.path.join(tmp, "mounts")
        print(f"emulator {gcs.url}; {args.size_mb} MB object; {args.files} x {args.file_kb} KB objects; "
              f"mount block {args.block_mb} MiB, readahead {args.readahead}, kernel read-ahead "
              f"{options.kernel_readahead_kb} KiB, libfuse{libfuse}, "
              f"{'multi' if options.threads else 'single'}-threaded; median of {args.repeat}")

        def stream(f):
            total = 0
            while chunk := f.read(CHUNK):
                total += len(chunk)
            assert total == size

        # (a) direct: a fresh gcsfs client each run; the better of its two ways per pattern
        def direct_whole(_):
            assert len(gcs.filesystem().cat_file(f"{BUCKET}/big.bin")) == size

        def direct_stream(_):
            with gcs.filesystem().open(f"{BUCKET}/big.bin", "rb") as f:
                stream(f)

        # (b) FUSE: plain open() on a fresh mount each run
        def mount():
            return mounts.mount_datasets([dataset], root, options)

        def fuse_stream(ms):
            with open(os.path.join(ms[0].mountpoint, "big.bin"), "rb", buffering=0) as f:
                stream(f)

        def fuse_whole(ms):
            with open(os.path.join(ms[0].mountpoint, "big.bin"), "rb") as f:
                assert len(f.read()) == size

        # every repetition runs each way once, so a busy machine slows them alike
        runs = {key: [] for key in ("direct_stream", "fuse_stream", "cached_stream", "direct_whole",
                                    "fuse_whole", "cached_whole", "cached_first")}
        second_requests = 0
        for i in range(args.repeat):
            runs["direct_stream"].append(median_time(direct_stream, 1))
            runs["fuse_stream"].append(median_time(fuse_stream, 1, setup=mount, teardown=mounts.unmount_datasets))
            runs["direct_whole"].append(median_time(direct_whole, 1))
            runs["fuse_whole"].append(median_time(fuse_whole, 1, setup=mount, teardown=mounts.unmount_datasets))
            # (c) the notebook API (simplecache): a first read fills the cache; the second is timed
            fs = open_dataset(dataset, cache="simplecache", cache_dir=os.path.join(tmp, f"cache{i}"))
            t1, _ = timed(lambda: fs.cat_file("big.bin"))
            mark = gcs.mark()
            with fs.open("big.bin") as f:
                t2, _ = timed(lambda: stream(f))
            t3, data = timed(lambda: fs.cat_file("big.bin"))
            assert len(data) == size
            del data
            second_requests += len(gcs.requests(mark))
            runs["cached_first"].append(t1)
            runs["cached_stream"].append(t2)
            runs["cached_whole"].append(t3)
        t = {key: statistics.median(values) for key, values in runs.items()}

        names = sorted(p.rsplit("/", 1)[1] for p in small)

        def small_direct(_):
            fs = gcs.filesystem()
            listed = fs.ls(f"{BUCKET}/small")
            assert sum(len(fs.cat_file(p)) for p in listed) == len(small) * args.file_kb * 1000

        def small_direct_batch(_):
            fs = gcs.filesystem()
            listed = fs.ls(f"{BUCKET}/small")
            assert sum(map(len, fs.cat(listed).values())) == len(small) * args.file_kb * 1000

        def small_mount(ms):
            folder = os.path.join(ms[0].mountpoint, "small")
            listed = sorted(os.listdir(folder))
            assert listed == names
            assert sum(read_posix(os.path.join(folder, n)) for n in listed) == len(small) * args.file_kb * 1000

        def small_mount_parallel(ms):
            folder = os.path.join(ms[0].mountpoint, "small")
            with ThreadPoolExecutor(8) as pool:
                total = sum(pool.map(lambda n: read_posix(os.path.join(folder, n)), os.listdir(folder)))
            assert total == len(small) * args.file_kb * 1000

        t_small_direct = median_time(small_direct, args.repeat)
        t_small_batch = median_time(small_direct_batch, args.repeat)
        t_small_mount = median_time(small_mount, args.repeat, setup=mount, teardown=mounts.unmount_datasets)
        t_small_parallel = median_time(small_mount_parallel, args.repeat, setup=mount, teardown=mounts.unmount_datasets)

    mb = size / 1e6

    def line(label, seconds, extra=""):
        print(f"{label:34s} {seconds:7.3f} s  {mb / seconds:8.1f} MB/s  {extra}")

    print("200 MB object, streamed in 1 MiB reads:")
    line("(a) direct, gcsfs open()/read()", t["direct_stream"])
    line("(b) FUSE mount, open()/read()", t["fuse_stream"])
    line("(c) cached API, second read", t["cached_stream"],
         f"({second_requests} bucket requests in {args.repeat} second reads)")
    print("200 MB object, read whole into memory:")
    line("(a) direct, gcsfs cat_file()", t["direct_whole"])
    line("(b) FUSE mount, open().read()", t["fuse_whole"])
    line("    cached API, first read", t["cached_first"])
    line("(c) cached API, second read", t["cached_whole"])
    print(f"small files, direct, one by one    {t_small_direct:7.3f} s")
    print(f"small files, direct, one batch     {t_small_batch:7.3f} s")
    print(f"small files, mount, one by one     {t_small_mount:7.3f} s")
    print(f"small files, mount, 8 threads      {t_small_parallel:7.3f} s")
    summary = {
        "object_mb": round(mb, 1),
        **{f"{key}_s": round(value, 4) for key, value in t.items()},
        "cached_second_requests": second_requests,
        # the targets, streamed (same pattern on both sides); the whole-object reads beside
        "fuse_vs_direct": round(t["direct_stream"] / t["fuse_stream"], 3),
        "cached_vs_direct": round(t["direct_stream"] / t["cached_stream"], 2),
        "fuse_vs_direct_whole": round(t["direct_whole"] / t["fuse_whole"], 3),
        "cached_vs_direct_whole": round(t["direct_whole"] / t["cached_whole"], 2),
        "small_files": len(small),
        "small_direct_s": round(t_small_direct, 3),
        "small_direct_batch_s": round(t_small_batch, 3),
        "small_mount_s": round(t_small_mount, 3),
        "small_mount_8_threads_s": round(t_small_parallel, 3),
        "small_files_mount_vs_direct": round(t_small_direct / t_small_mount, 3),
        "small_files_mount_vs_direct_batch": round(t_small_batch / t_small_mount, 3),
        "block_size": options.block_size,
        "readahead": options.readahead,
        "fuse_threads": options.threads,
        "libfuse": libfuse,
        "settings": {k: v for k, v in options.as_dict().items() if k != "allow_other"},  # c.DatasetMounts used
        "repeat": args.repeat,
        "load_average": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
