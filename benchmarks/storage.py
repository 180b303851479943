"""Home quotas: what they cost and whether the hub stays responsive while one is filled.

Measured side by side in one run, as root (home images are loop mounts):

1. write throughput into a quota-enforced home (an ext4 image loop-mounted, as the local
   hub makes it) vs a plain folder on the same disk: ``--write-mib`` written with fsync,
   alternately, ``--rounds`` times each; the ratio of the medians (issue 24: >= 0.9);
2. the admins' usage scan (``oggmhub.storage.table.used_bytes``) of ``--homes`` plain
   homes of ``--files`` small files each (issue 24: 200 x 1,000 in < 5 s);
3. unless ``--no-hub``: a real local hub in accounts mode, one user's notebook writing
   until ENOSPC while the bench asks the hub's API every 0.1 s; the slowest answer
   (issue 24: < 2 s).

    python benchmarks/storage.py [--write-mib 256] [--rounds 3] [--homes 200] [--files 1000] [--no-hub]

The last line is JSON with write_ratio, usage_scan_s, max_api_s_while_full (and the figures behind them).
"""

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]  # this checkout's oggmhub, and tests/support
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))  # the hub's too

from oggmhub.backends.local import home_images  # noqa: E402
from oggmhub.storage import table  # noqa: E402

MiB = 1024**2
LOG = logging.getLogger("bench-storage")


def write_speed(folder, mib):
    """MiB/s writing ``mib`` MiB into ``folder`` (1 MiB blocks, fsync at the end)."""
    path = os.path.join(folder, "bench.bin")
    block = os.urandom(MiB)
    began = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(mib):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - began
    os.unlink(path)
    return mib / elapsed


def bench_writes(work, mib, rounds):
    plain = os.path.join(work, "plain")
    home = os.path.join(work, "homes", "bench")
    os.makedirs(plain)
    os.makedirs(home)
    home_images.prepare(work, "bench", home, (mib + 64) * MiB, (0, 0), LOG)
    try:
        quota, free = [], []
        for _ in range(rounds):
            free.append(write_speed(plain, mib))
            quota.append(write_speed(home, mib))
    finally:
        home_images.unmount(home)
    return statistics.median(quota), statistics.median(free)


def bench_scan(work, homes, files):
    root = os.path.join(work, "scan")
    for h in range(homes):
        folder = os.path.join(root, f"user{h:03d}", "runs")
        os.makedirs(folder)
        for f in range(files):
            with open(os.path.join(folder, f"out{f:04d}.txt"), "wb") as out:
                out.write(b"x" * 200)
    began = time.perf_counter()
    total = sum(table.used_bytes(os.path.join(root, name)) for name in sorted(os.listdir(root)))
    return time.perf_counter() - began, total


FILL = """
import os, time
fd = os.open(os.path.join(os.environ["HOME"], "fill.bin"), os.O_WRONLY | os.O_CREAT, 0o600)
block, written = os.urandom(1024 * 1024), 0
try:
    while True:
        written += os.write(fd, block)
        time.sleep(0.02)
except OSError as e:
    print(written, e.errno)
"""


def bench_hub(quota_mib):
    import yaml

    from support.kernels import kernel, run
    from support.local_hub import LocalHub, accounts_folder, env_cache

    with accounts_folder(prefix="bench-storage-") as folder:
        data_dir = os.path.join(folder, "data")
        hub = LocalHub(data_dir, mode="accounts", env={"OGGMHUB_ENV_CACHE": env_cache("accounts"),
                                                        "OGGMHUB_COHORT_CHECK_INTERVAL": "0"})
        with open(hub.catalog) as f:
            catalog = yaml.safe_load(f)
        catalog["storage"] = {"home_quota": f"{quota_mib}Mi"}
        with open(hub.catalog, "w") as f:
            yaml.safe_dump(catalog, f, sort_keys=False)
        hub.start()
        try:
            session = hub.new_user("filler", "bench-storage-1")
            hub.api(session, "POST", "/users/filler/server", json={"profile": "oggm"}).raise_for_status()
            hub.wait_for_server(session, "filler")
            token, _, ws = kernel(hub, session, "filler")
            result = {}
            writer = threading.Thread(target=lambda: result.update(out=run(ws, token, FILL, timeout=600)))
            writer.start()
            latencies = []
            while writer.is_alive():
                began = time.perf_counter()
                hub.api(session, "GET", "/users/filler").raise_for_status()
                latencies.append(time.perf_counter() - began)
                time.sleep(0.1)
            written, err = result["out"].split()[-2:]
            return max(latencies), len(latencies), int(written), int(err)
        finally:
            try:
                hub.stop(servers=True)
            finally:
                for point in home_images.mounted_images(data_dir).values():
                    subprocess.run(["umount", point])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-mib", type=int, default=256, help="MiB written per round (default 256)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each write (default 3)")
    parser.add_argument("--homes", type=int, default=200, help="homes in the usage scan (default 200)")
    parser.add_argument("--files", type=int, default=1000, help="files per home in the usage scan (default 1000)")
    parser.add_argument("--hub-quota-mib", type=int, default=128, help="the filler's quota on the hub (default 128)")
    parser.add_argument("--no-hub", action="store_true", help="skip the hub's API latency while a home fills")
    parser.add_argument("--dir", default=None, help="where to work (default: a new folder in /tmp; same disk for both writes)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root: home images are loop mounts")
    work = tempfile.mkdtemp(prefix="bench-storage-", dir=args.dir or "/tmp")
    try:
        quota_speed, plain_speed = bench_writes(work, args.write_mib, args.rounds)
        ratio = quota_speed / plain_speed
        print(f"write: quota home {quota_speed:.0f} MiB/s, plain folder {plain_speed:.0f} MiB/s, ratio {ratio:.2f} (target >= 0.9)")
        scan_s, total = bench_scan(work, args.homes, args.files)
        print(f"usage scan: {args.homes} homes x {args.files} files ({total / MiB:.0f} MiB) in {scan_s:.2f} s (target < 5 s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = {"write_ratio": round(ratio, 3), "usage_scan_s": round(scan_s, 3), "max_api_s_while_full": None,
               "quota_write_mib_s": round(quota_speed, 1), "plain_write_mib_s": round(plain_speed, 1),
               "load_1min": os.getloadavg()[0]}
    if not args.no_hub:
        max_api, count, written, err = bench_hub(args.hub_quota_mib)
        print(f"hub: {written / MiB:.0f} MiB written until errno {err} (28 = ENOSPC) in a {args.hub_quota_mib} MiB home; "
              f"slowest of {count} API answers meanwhile {max_api:.3f} s (target < 2 s)")
        figures.update(max_api_s_while_full=round(max_api, 3), api_requests=count, written_until_full=written,
                       errno=err)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
