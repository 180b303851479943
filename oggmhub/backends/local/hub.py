"""``oggmhub hub``: start the local hub (JupyterHub + proxy on this machine).

Checks what a start needs (the proxy installed, a valid catalog) and says how to fix what
is missing, then runs JupyterHub with ``hub_config/jupyterhub_config.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
import sys

from oggmhub.catalog import CatalogError, load_catalog


def repo_root():
    """The checkout this package runs from (the local hub runs from a clone)."""
    return str(Path(__file__).resolve().parents[3])


def hub_environment(args):
    """The OGGMHUB_* variables hub_config/jupyterhub_config.py reads."""
    env = dict(os.environ)
    env.update(
        OGGMHUB_IP=args.ip,
        OGGMHUB_PORT=str(args.port),
        OGGMHUB_HUB_PORT=str(args.hub_port),
        OGGMHUB_DATA_DIR=os.path.abspath(args.data_dir),
        OGGMHUB_CATALOG=os.path.abspath(args.catalog),
        OGGMHUB_ADMIN=args.admin,
        OGGMHUB_IDLE_TIMEOUT=str(args.idle_timeout),
        OGGMHUB_COHORT_CHECK_INTERVAL=str(args.cohort_check_interval),
    )
    return env


def start_hub(args):
    for option, value in (("--idle-timeout", args.idle_timeout), ("--cohort-check-interval", args.cohort_check_interval)):
        if value < 0:
            print(f"oggmhub hub: {option} must be 0 (off) or a number of seconds, not {value}", file=sys.stderr)
            return 2
    proxy = os.path.join(repo_root(), "node_modules", ".bin", "configurable-http-proxy")
    if not os.path.exists(proxy):
        print(f"oggmhub hub: JupyterHub's proxy is not installed ({proxy} is missing); "
              f"run `npm ci` in {repo_root()} (needs Node.js and npm)", file=sys.stderr)
        return 2
    try:
        load_catalog(args.catalog)
    except CatalogError as e:
        print("\n".join(e.problems), file=sys.stderr)
        return 2
    os.makedirs(args.data_dir, mode=0o700, exist_ok=True)
    print(f"oggmhub: starting the local hub on http://{args.ip}:{args.port} "
          f"(data in {os.path.abspath(args.data_dir)})", flush=True)
    from oggmhub.backends.local.cgroups import describe

    print(f"oggmhub: {describe()}", flush=True)
    command = [sys.executable, "-m", "jupyterhub", "-f", args.config]
    os.chdir(os.path.abspath(args.data_dir))
    os.execve(sys.executable, command, hub_environment(args))


def register(commands):
    """The ``hub`` verb."""
    root = repo_root()
    hub = commands.add_parser("hub", help="start the local hub on this machine")
    hub.add_argument("--ip", default="127.0.0.1", help="address users reach the hub on (default: %(default)s)")
    hub.add_argument("--port", type=int, default=8000, help="port users reach the hub on (default: %(default)s)")
    hub.add_argument("--hub-port", type=int, default=8081,
                     help="the hub's internal port; the proxy's API uses the next one (default: %(default)s)")
    hub.add_argument("--data-dir", default=os.environ.get("OGGMHUB_DATA_DIR", os.path.join(root, "data")),
                     help="database, homes and built environments (default: %(default)s)")
    hub.add_argument("--catalog", default=os.environ.get("OGGMHUB_CATALOG", os.path.join(root, "hub_config", "catalog.yaml")),
                     help="the catalog (default: %(default)s)")
    hub.add_argument("--admin", default="admin", help="the first admin's username (default: %(default)s)")
    hub.add_argument("--idle-timeout", type=int, default=3600,
                     help="cull servers idle this many seconds; 0 never culls (default: %(default)s)")
    hub.add_argument("--cohort-check-interval", type=int,
                     default=int(os.environ.get("OGGMHUB_COHORT_CHECK_INTERVAL", "60")),
                     help="stop servers of cohorts whose window ended, checking every this many "
                          "seconds; 0 never stops them (default: %(default)s)")
    hub.add_argument("--config", default=os.path.join(root, "hub_config", "jupyterhub_config.py"),
                     help="JupyterHub config file (default: %(default)s)")
    hub.set_defaults(func=start_hub)
