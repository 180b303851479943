"""The options of ``oggmhub hub`` and their checks, in the standard library only.

``start-local-hub.sh`` runs this module with the distribution's own ``python3`` before
anything is installed (``python3 -m oggmhub.backends.local.hub_options ARGS``): ``--help``
answers at once, and a bad option, a port already taken or a data directory that cannot be
written is refused in one line (exit 2) before the script creates a virtualenv or
downloads anything. ``oggmhub hub`` (:mod:`.hub`) uses the same parser and runs the same
checks before it starts JupyterHub.
"""

from __future__ import annotations

import argparse
import errno
import os
from pathlib import Path
import socket
import sys
import tempfile


def repo_root():
    """The checkout this package runs from (the local hub runs from a clone)."""
    return str(Path(__file__).resolve().parents[3])


def add_hub_arguments(hub):
    """The options of the local hub, added to the (sub-)parser ``hub``."""
    root = repo_root()
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
    hub.add_argument("--stop-servers-on-exit", action="store_true",
                     help="stop every user's server when the hub stops (default: they keep running "
                          "and the next start finds them again)")
    hub.add_argument("--shared-account", action="store_true",
                     help="run every user's server as the hub's own system account, knowingly: users can "
                          "read each other's files (the welcome page says so). Default: as root, each user "
                          "gets a system account of their own; otherwise only one hub user may start a server")
    hub.add_argument("--config", default=os.path.join(root, "hub_config", "jupyterhub_config.py"),
                     help="JupyterHub config file (default: %(default)s)")
    hub.add_argument("--config-extra", action="append", default=[], metavar="FILE",
                     help="a JupyterHub config file loaded after --config, to change any setting without "
                          "editing the shipped one (e.g. c.Welcome.title, c.JupyterHub.public_url for the "
                          "launch links' absolute URLs); may be given more than once, loaded in that order")
    return hub


def _port_problem(ip, port, option):
    if not 0 < port < 65536:
        return f"{option} {port} is not a port number (1-65535)"
    with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM) as s:
        # as the hub and proxy bind: a port left in TIME_WAIT by the last run is free, one listened on is not
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return f"{option} {port}: port {port} on {ip} is already in use; pick another with {option}"
            return f"{option} {port}: cannot listen on {ip}:{port} ({e.strerror})"
    return None


def _writable(folder):
    """Whether this process can create files in ``folder`` (tried for real: root passes os.access everywhere)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".oggmhub-write-check-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def _data_dir_problem(data_dir):
    path = Path(os.path.abspath(data_dir))
    if path.exists():
        if not path.is_dir():
            return f"--data-dir {data_dir}: {path} exists and is not a folder"
        if not _writable(path):
            return f"--data-dir {data_dir}: {path} is not writable by this user; pick another with --data-dir"
        return None
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not _writable(parent):
        return (f"--data-dir {data_dir}: cannot create {path} ({parent} is not writable by this user); "
                f"pick another with --data-dir")
    return None


class _OneLineParser(argparse.ArgumentParser):
    """An unknown or malformed option is one line (and exit 2), not the usage and a line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def problems(args):
    """What is wrong with the options ``args``, one line each (empty: all good). Creates nothing."""
    found = []
    for option, value in (("--idle-timeout", args.idle_timeout), ("--cohort-check-interval", args.cohort_check_interval)):
        if value < 0:
            found.append(f"{option} must be 0 (off) or a number of seconds, not {value}")
    for option, port in (("--port", args.port), ("--hub-port", args.hub_port), ("--hub-port", args.hub_port + 1)):
        problem = _port_problem(args.ip, port, option)
        if problem:
            if port == args.hub_port + 1 and option == "--hub-port":
                problem += f" (the proxy's API uses --hub-port + 1 = {port})"
            found.append(problem)
            break
    if args.port == args.hub_port or args.port == args.hub_port + 1:
        found.append(f"--port {args.port} and --hub-port {args.hub_port} collide (the hub uses --hub-port and --hub-port + 1)")
    problem = _data_dir_problem(args.data_dir)
    if problem:
        found.append(problem)
    if not os.path.isfile(args.catalog):
        found.append(f"--catalog {args.catalog}: no such file")
    if not os.path.isfile(args.config):
        found.append(f"--config {args.config}: no such file")
    for extra in getattr(args, "config_extra", None) or ():
        if not os.path.isfile(extra):
            found.append(f"--config-extra {extra}: no such file")
    return found


def main(argv=None, prog="start-local-hub.sh"):
    parser = _OneLineParser(
        prog=prog,
        description="Start oggmhub's local hub on this machine (JupyterHub and its proxy; no Kubernetes, no Docker). "
                    "The first run installs the hub into its own virtualenv (.venv in the clone).",
    )
    add_hub_arguments(parser)
    args = parser.parse_args(argv)
    found = problems(args)
    for line in found:
        print(f"{prog}: {line}", file=sys.stderr)
    return 2 if found else 0


if __name__ == "__main__":
    sys.exit(main())
