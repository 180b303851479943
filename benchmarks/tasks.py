"""A batch of small image volumes in a GCS bucket through one Slicer-style CLI: two Dask
workers (what oggmhub's tasks service does) vs one request per process, one at a time
(fiji_cloudrun's model: a container per request, concurrency 1).

One command, one GCS emulator (fake-gcs-server on 127.0.0.1)::

    python benchmarks/tasks.py [--runs 200] [--workers 2] [--size 24]

Both ways run the same code on the same plans: ``oggmhub.tasks.execution.execute`` fetches
the volume from the bucket with gcsfs, runs ``images/slicer/tasks/GaussianBlur.py``
(SimpleITK, in this Python: the Slicer environment cannot be built here), and uploads the
result to the bucket.

* **one at a time**: ``python -m oggmhub.tasks.execution PLAN.json``, a fresh process per
  request, each after the previous one ended;
* **Dask**: a ``distributed.LocalCluster`` of ``--workers`` worker processes (one thread
  each) with every plan submitted at once, as the tasks service submits a batch.

``overhead_ms`` is per run, over the CLI's own run time (the tool's process, start to
exit): on Dask, the mean of (the run's time in ``execute`` - the CLI's); one at a time,
the mean of (the request's wall time - the CLI's). The last line is JSON: ``runs``,
``ok`` (outputs present in the bucket and readable), ``lost`` (submitted, no result),
``speedup`` (one at a time / Dask wall time; target >= 1.8 on 2 cores), ``overhead_ms``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, REPO)
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

CLI = os.path.join(REPO, "images", "slicer", "tasks", "GaussianBlur.py")


def volume(i, size):
    import numpy as np
    import SimpleITK as sitk

    rng = np.random.default_rng(i)
    a = rng.integers(0, 100, size=(size // 2, size, size)).astype("int16")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "v.nrrd")
        sitk.WriteImage(sitk.GetImageFromArray(a), path)
        return open(path, "rb").read()


def plan(i, mode, url, run_root):
    options = {"endpoint_url": url, "token": "anon"}
    params = [{"name": "sigma", "type": "double", "index": None, "flag": "-s", "longflag": "--sigma"},
              {"name": "inputVolume", "type": "image", "index": 0, "flag": "", "longflag": ""},
              {"name": "outputVolume", "type": "image", "index": 1, "flag": "", "longflag": ""}]
    run_id = f"{mode}{i:04d}"
    return {"run_id": run_id, "run_dir": os.path.join(run_root, run_id), "kind": "slicer-cli",
            "command": [sys.executable, CLI], "parameters": params, "values": {"sigma": 1.5},
            "inputs": {"inputVolume": {"kind": "url", "url": f"gs://scans/in/v{i:04d}.nrrd", "options": options}},
            "outputs": {"outputVolume": {"kind": "url", "url": f"gs://results/{mode}/v{i:04d}.nrrd", "options": options}},
            "timeout": 300}


def one_at_a_time(plans, run_root):
    results, walls = [], []
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.perf_counter()
    for p in plans:
        path = os.path.join(run_root, p["run_id"] + ".json")
        with open(path, "w") as f:
            json.dump(p, f)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "oggmhub.tasks.execution", path], capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        try:
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            results.append(None)
    return time.perf_counter() - start, results, walls


def on_dask(plans, workers):
    from distributed import Client, LocalCluster

    from oggmhub.tasks.execution import execute

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as client:
        client.submit(sum, [1]).result()  # the cluster is up before the clock starts, as in the service
        start = time.perf_counter()
        futures = [client.submit(execute, p, pure=False) for p in plans]
        results = []
        for f in futures:
            try:
                results.append(f.result())
            except Exception:  # noqa: BLE001 (a lost run)
                results.append(None)
        return time.perf_counter() - start, results


def check(results, fs, mode):
    present = set(fs.find(f"results/{mode}"))
    ok = sum(1 for i, r in enumerate(results)
             if r and r["status"] == "done" and f"results/{mode}/v{i:04d}.nrrd" in present)
    lost = sum(1 for r in results if r is None)
    return ok, lost


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=24, help="volume edge in voxels (size/2 x size x size)")
    args = parser.parse_args()

    from support.gcs_emulator import GCSEmulator

    with GCSEmulator() as gcs, tempfile.TemporaryDirectory(prefix="oggmhub-bench-tasks-") as tmp:
        gcs.create_bucket("scans")
        gcs.create_bucket("results")
        fs = gcs.filesystem()
        for i in range(args.runs):
            fs.pipe(f"scans/in/v{i:04d}.nrrd", volume(i, args.size))
        load = os.getloadavg()[0]
        serial_s, serial, walls = one_at_a_time([plan(i, "serial", gcs.url, tmp) for i in range(args.runs)], tmp)
        dask_s, parallel = on_dask([plan(i, "dask", gcs.url, tmp) for i in range(args.runs)], args.workers)
        fs.invalidate_cache()
        ok_serial, lost_serial = check(serial, fs, "serial")
        ok, lost = check(parallel, fs, "dask")
        cli = [r["cli_seconds"] for r in parallel if r and "cli_seconds" in r]
        overhead = [(r["finished"] - r["started"] - r["cli_seconds"]) for r in parallel if r and "cli_seconds" in r]
        serial_overhead = [w - r["cli_seconds"] for w, r in zip(walls, serial) if r and "cli_seconds" in r]
        print(f"{'':24}{'one at a time':>16}{'Dask x' + str(args.workers):>16}")
        print(f"{'wall time (s)':24}{serial_s:16.1f}{dask_s:16.1f}")
        print(f"{'runs ok / lost':24}{f'{ok_serial} / {lost_serial}':>16}{f'{ok} / {lost}':>16}")
        print(f"{'per run (ms)':24}{1000 * serial_s / args.runs:16.0f}{1000 * dask_s / args.runs:16.0f}")
        print(f"{'overhead per run (ms)':24}{1000 * statistics.mean(serial_overhead or [0]):16.0f}"
              f"{1000 * statistics.mean(overhead or [0]):16.0f}")
        print(f"CLI's own run time: median {1000 * statistics.median(cli or [0]):.0f} ms; "
              f"load average at start {load:.1f} on {os.cpu_count()} cores")
        print(json.dumps({"runs": args.runs, "ok": ok, "lost": lost, "speedup": round(serial_s / dask_s, 2),
                          "overhead_ms": round(1000 * statistics.mean(overhead or [0]), 1),
                          "serial_ok": ok_serial, "serial_overhead_ms": round(1000 * statistics.mean(serial_overhead or [0]), 1),
                          "workers": args.workers, "load": round(load, 1)}))


if __name__ == "__main__":
    main()
