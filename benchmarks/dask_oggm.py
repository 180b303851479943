"""An ensemble of real OGGM glacier runs: serial vs a 2-worker local Dask cluster.

One command, one run (in the OGGM environment, e.g. ~/.cache/oggmhub/envs/oggm-*/bin/python)::

    python benchmarks/dask_oggm.py [--runs 16] [--years 100] [--workers 2] [--repeat 5] [--idealized]

Hintereisferner (RGI60-11.00897) is prepared once from OGGM's sample data
(``oggmhub.session.oggm_glacier.prepare``: outlines, DEM, HISTALP climate, calibration,
inversion), read through OGGM's download cache: ``$OGGM_DOWNLOAD_CACHE`` if it holds the
sample data, else a temporary cache filled from ``--sample-data`` (OGGM's zip, default
../shared/data) the way ``oggmhub datasets mirror`` fills a hub's mirror. The members
(``oggm_dask.glacier_members``: climate realisations of OGGM's random mass balance,
``--years`` each) run first one after the other in this process, then on a
``LocalCluster`` started by ``oggmhub.session.dask.cluster`` (worker processes, one thread
each) set up with OGGM's configuration. The serial and Dask results must agree exactly.
``--idealized`` runs OGGM's idealized flowline ensemble instead (no data).

Each worker gets the same warm-up this process gets (one 1-year run), and ``--repeat``
rounds alternate the serial and the Dask ensemble so both see the same load.
``speedup`` is the median over rounds of serial time over Dask time (the ensemble only;
target >= 1.8 on 2 quiet cores; 5 rounds by default, because on a 2-core virtual machine
the same serial ensemble took 18 to 25 s from one round to the next), ``speedup_with_start``
also counts starting the cluster once. The last line is JSON.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
COMMIT = "8af40f89620c6bd72f3485a777a018dcacb99d94"  # oggm 1.6.3's SAMPLE_DATA_COMMIT
ZIP_NAME = f"oggm-sample-data-{COMMIT}.zip"


def default_zip():
    """``$OGGMHUB_SHARED_DATA``'s zip, else the first shared/data beside the checkout or above it."""
    if os.environ.get("OGGMHUB_SHARED_DATA"):
        return os.path.join(os.environ["OGGMHUB_SHARED_DATA"], ZIP_NAME)
    for up in ("..", os.path.join("..", ".."), os.path.join("..", "..", "..")):
        candidate = os.path.abspath(os.path.join(HERE, up, "shared", "data", ZIP_NAME))
        if os.path.isfile(candidate):
            return candidate
    return os.path.abspath(os.path.join(HERE, "..", "..", "shared", "data", ZIP_NAME))


DEFAULT_ZIP = default_zip()
SALEM = "salem-sample-data-454bf696324000d198f574a1bf5bc56e3e489051"


def _offline_setup(zip_path, scratch):
    """Point OGGM's cache at the sample data; stand in for salem's map borders if absent.
    Returns what was done (for the summary)."""
    from oggmhub.cli import mirror

    done = {}
    cache = os.environ.get("OGGM_DOWNLOAD_CACHE")
    target = f"github.com/OGGM/oggm-sample-data/archive/{COMMIT}.zip"
    if not (cache and os.path.isfile(os.path.join(cache, target))):
        if not os.path.isfile(zip_path):
            sys.exit(f"OGGM's sample data is not in $OGGM_DOWNLOAD_CACHE and {zip_path} is absent: "
                     "give --sample-data ZIP (see shared/data/README.md)")
        cache = os.path.join(scratch, "oggm-mirror")
        fs, root = mirror.destination(cache)
        mirror.mirror_sample_zip(zip_path, fs, root, log=lambda *_: None)
        os.environ["OGGM_DOWNLOAD_CACHE"] = cache
    os.environ.setdefault("OGGM_DOWNLOAD_CACHE_RO", "1")
    os.environ.setdefault("OGGM_EXTRACT_DIR", os.path.join(scratch, "extract"))
    done["download_cache"] = cache
    # salem fetches country borders on first import; this machine cannot (shared/data/README.md)
    if not glob.glob(os.path.expanduser(f"~/.salem_cache/{SALEM}")):
        home = os.path.join(scratch, "home")
        shapes = os.path.join(home, ".salem_cache", SALEM, "shapes", "world_borders")
        os.makedirs(shapes, exist_ok=True)
        open(os.path.join(shapes, "world_borders.shp"), "w").close()
        os.environ["HOME"] = home
        done["salem_stand_in"] = True
    return done


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=16, help="ensemble members (default: %(default)s)")
    parser.add_argument("--years", type=int, default=100, help="years each member runs (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="Dask workers (default: %(default)s)")
    parser.add_argument("--sample-data", default=DEFAULT_ZIP, help="OGGM's sample-data zip (default: ../shared/data)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of serial then Dask (default: %(default)s)")
    parser.add_argument("--idealized", action="store_true", help="OGGM's idealized flowline instead of a real glacier")
    args = parser.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="oggmhub-bench-")

    setup = {} if args.idealized else _offline_setup(os.path.abspath(args.sample_data), scratch)

    import oggmhub.session.dask
    from oggmhub.session import oggm_dask

    if args.idealized:
        from oggm import cfg

        cfg.initialize_minimal(logging_level="WARNING")
        members = oggm_dask.ensemble_members(args.runs, years=args.years)
        oggm_dask.idealized_run(oggm_dask.IdealizedRun(years=1))

        def run(client):
            return oggm_dask.run_ensemble(client, members)
        glacier = "idealized rectangular-bed glacier"
    else:
        from oggmhub.session import oggm_glacier

        started = time.perf_counter()
        gdir = oggm_glacier.prepare(os.path.join(scratch, "hef"), logging_level="CRITICAL")
        print(f"prepared {oggm_glacier.NAME} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        members = oggm_dask.glacier_members(args.runs, years=args.years)
        oggm_dask.glacier_run(oggm_dask.GlacierMember(seed=0, years=1), gdir)  # imports warm

        def run(client):
            return oggm_dask.run_glacier_ensemble(client, gdir, members)
        glacier = f"{oggm_glacier.NAME} ({oggm_glacier.RGI_ID})"

    started = time.perf_counter()
    cluster, client = oggmhub.session.dask.cluster(workers=args.workers, worker_cores=1)
    serial_times, dask_times, identical = [], [], []
    try:
        oggm_dask.setup_workers(client)
        client.run(lambda: __import__("oggm.core.flowline"))  # OGGM imported on every worker
        if not args.idealized:  # every worker warmed like this process was: one 1-year run
            client.run(oggm_dask.glacier_run, oggm_dask.GlacierMember(seed=0, years=1), gdir)
        start_s = time.perf_counter() - started
        print(f"cluster: {args.workers} workers ready in {start_s:.2f} s", file=sys.stderr)
        # rounds alternate serial and Dask, so both see the same machine load
        for round_ in range(1, args.repeat + 1):
            started = time.perf_counter()
            serial = run(None)
            serial_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            parallel = run(client)
            dask_times.append(time.perf_counter() - started)
            identical.append([r["volume_km3"] for r in serial] == [r["volume_km3"] for r in parallel])
            print(f"round {round_}: {args.runs} runs of {args.years} years, serial {serial_times[-1]:.2f} s, "
                  f"dask {dask_times[-1]:.2f} s", file=sys.stderr)
    finally:
        client.close()
        cluster.close()
    serial_s, dask_s = statistics.median(serial_times), statistics.median(dask_times)
    speedups = [s / d for s, d in zip(serial_times, dask_times)]

    key = "volume_km3"
    same = all(identical)  # in every round
    final = [r[key][-1] if isinstance(r[key], list) else r[key] for r in serial]
    summary = {
        "glacier": glacier,
        "runs": args.runs,
        "years": args.years,
        "workers": args.workers,
        "cores": os.cpu_count(),
        "serial_s": round(serial_s, 3),
        "dask_s": round(dask_s, 3),
        "cluster_start_s": round(start_s, 3),
        "repeat": args.repeat,
        "speedup": round(statistics.median(speedups), 3),  # median of the rounds' ratios
        "speedups": [round(x, 3) for x in speedups],
        "speedup_with_start": round(serial_s / (dask_s + start_s), 3),
        "mean_run_s": round(sum(r["seconds"] for r in serial) / len(serial), 3),
        "final_volume_km3": [round(min(final), 4), round(max(final), 4)],
        "results_identical": same,
        "load_average": round(os.getloadavg()[0], 2),
        **setup,
    }
    print(json.dumps(summary))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
