"""The ``scratch-cleaner`` hub-managed service (local hub): every ``--interval`` seconds,
remove scratch files older than the catalog's ``storage.scratch_ttl_days`` (re-read each
time) and log, per user, what was removed (:mod:`.scratch`).

    python -m oggmhub.storage.scratch_service --data-dir DIR --catalog FILE [--interval 3600] [--once]
"""

from __future__ import annotations

import argparse
import logging
import os
import time

from oggmhub.catalog import CatalogError, cached_catalog
from oggmhub.storage import scratch
from oggmhub.storage.quotas import human

log = logging.getLogger("oggmhub.scratch-cleaner")


def run_once(data_dir, catalog_path):
    """One pass; the :class:`~.scratch.Removed` of each user (none when no TTL is set)."""
    try:
        days = scratch.ttl_days(cached_catalog(catalog_path).storage)
    except CatalogError as e:
        log.error("scratch not cleaned: %s", e)
        return []
    if not days:
        return []
    results = scratch.clean_all(os.path.join(data_dir, "scratch"), days * scratch.DAY)
    for r in results:
        if r.paths or r.kept_in_use:
            shown = ", ".join(r.paths[:20]) + (f" and {len(r.paths) - 20} more" if len(r.paths) > 20 else "")
            log.info("scratch of %s: removed %d older than %d days (%s): %s; kept %d in use",
                     r.user, len(r.paths), days, human(r.bytes), shown or "nothing", r.kept_in_use)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="oggmhub.storage.scratch_service", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--interval", type=int, default=3600, help="seconds between passes (default 3600)")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s scratch-cleaner] %(message)s")
    try:
        while True:
            run_once(args.data_dir, args.catalog)
            if args.once:
                return 0
            time.sleep(max(60, args.interval))
    except KeyboardInterrupt:  # the hub (or Ctrl-C) stopping it: a normal end, no traceback
        log.info("stopping")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
