"""An ensemble of OGGM's idealized flowline runs: serial vs a 2-worker local Dask cluster.

One command, one run::

    python benchmarks/dask_oggm.py [--runs 16] [--years 500] [--workers 2]

The members (``oggmhub.session.oggm_dask.ensemble_members``: the same glacier under ELAs spread
from 2800 m to 3200 m) run first one after the other in this process, then on a
``LocalCluster`` started by ``oggmhub.session.dask.cluster`` (worker processes, one thread
each), each worker set up with OGGM's configuration (``oggmhub.session.oggm_dask``). OGGM is
imported and initialized before either timing starts; the serial and Dask results must
agree exactly.

``speedup`` is serial time over Dask time (the ensemble only; target >= 1.7 on 2
cores), ``speedup_with_start`` also counts starting the cluster and setting up OGGM on
its workers (``cluster_start_s``). The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=16, help="ensemble members (default: %(default)s)")
    parser.add_argument("--years", type=int, default=500, help="years each member runs (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="Dask workers (default: %(default)s)")
    args = parser.parse_args(argv)

    from oggm import cfg

    import oggmhub.session.dask
    from oggmhub.session import oggm_dask

    cfg.initialize_minimal(logging_level="WARNING")
    members = oggm_dask.ensemble_members(args.runs, years=args.years)
    oggm_dask.idealized_run(oggm_dask.IdealizedRun(years=1))  # imports warm, like the workers' setup

    started = time.perf_counter()
    serial = oggm_dask.run_ensemble(None, members)
    serial_s = time.perf_counter() - started
    print(f"serial: {args.runs} runs of {args.years} years in {serial_s:.2f} s", file=sys.stderr)

    started = time.perf_counter()
    cluster, client = oggmhub.session.dask.cluster(workers=args.workers, worker_cores=1)
    try:
        oggm_dask.setup_workers(client)
        client.run(lambda: __import__("oggm.core.flowline"))  # OGGM imported on every worker
        start_s = time.perf_counter() - started
        print(f"cluster: {args.workers} workers ready in {start_s:.2f} s ({cluster.dashboard_link})", file=sys.stderr)
        started = time.perf_counter()
        parallel = oggm_dask.run_ensemble(client, members)
        dask_s = time.perf_counter() - started
    finally:
        client.close()
        cluster.close()
    print(f"dask: {args.runs} runs in {dask_s:.2f} s", file=sys.stderr)

    same = [round(a["volume_km3"], 9) for a in serial] == [round(b["volume_km3"], 9) for b in parallel]
    summary = {
        "runs": args.runs,
        "years": args.years,
        "workers": args.workers,
        "cores": os.cpu_count(),
        "serial_s": round(serial_s, 3),
        "dask_s": round(dask_s, 3),
        "cluster_start_s": round(start_s, 3),
        "speedup": round(serial_s / dask_s, 3),
        "speedup_with_start": round(serial_s / (dask_s + start_s), 3),
        "mean_run_s": round(sum(r["seconds"] for r in serial) / len(serial), 3),
        "results_identical": same,
        "load_average": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(summary))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
