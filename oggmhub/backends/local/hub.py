"""``oggmhub hub``: start the local hub (JupyterHub + proxy on this machine).

Checks what a start needs (the proxy installed, a valid catalog) and says how to fix what
is missing, then runs JupyterHub with ``hub_config/jupyterhub_config.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
import sys

from oggmhub.backends.local.hub_options import add_hub_arguments, problems, repo_root
from oggmhub.catalog import CatalogError, load_catalog


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
        OGGMHUB_STOP_SERVERS_ON_EXIT="1" if args.stop_servers_on_exit else "",
        OGGMHUB_SHARED_ACCOUNT="1" if args.shared_account else "",
        # loaded by hub_config/jupyterhub_config.py at its end, in this order
        OGGMHUB_CONFIG_EXTRA=os.pathsep.join(os.path.abspath(p) for p in getattr(args, "config_extra", None) or ()),
    )
    return env


def start_hub(args):
    # before the chdir below: ./data (or a relative --catalog, --config) means the caller's
    args.data_dir, args.catalog, args.config = map(os.path.abspath, (args.data_dir, args.catalog, args.config))
    args.config_extra = [os.path.abspath(p) for p in getattr(args, "config_extra", None) or ()]
    found = problems(args)  # bad options, a port in use, a data dir we cannot write: before anything starts
    for line in found:
        print(f"oggmhub hub: {line}", file=sys.stderr)
    if found:
        return 2
    proxy = os.path.join(repo_root(), "node_modules", ".bin", "configurable-http-proxy")
    if not os.path.exists(proxy):
        print(f"oggmhub hub: JupyterHub's proxy is not installed ({proxy} is missing); "
              f"run `npm ci` in {repo_root()} (needs Node.js and npm)", file=sys.stderr)
        return 2
    try:
        catalog = load_catalog(args.catalog)
    except CatalogError as e:
        print("\n".join(e.problems), file=sys.stderr)
        return 2
    from oggmhub.backends.local import machine

    here = machine.this_machine()
    for line in machine.not_offered(catalog, here):  # what the picker leaves out, and why
        print(f"oggmhub: not offered here: {line}", flush=True)
    from oggmhub.backends.local.environments import environments_lacking_packages

    for line in environments_lacking_packages(catalog):  # its servers fail until then: say it now
        print(f"oggmhub: {line}", flush=True)
    from oggmhub.backends.local.user_files import desktop_socket_warning

    socket_line = desktop_socket_warning(args.data_dir)  # TigerVNC's socket must fit 107 bytes
    if socket_line:
        print(f"oggmhub: {socket_line}", flush=True)
    accounts = os.geteuid() == 0 and not args.shared_account
    envs = os.environ.get("OGGMHUB_ENV_CACHE") or os.path.join(args.data_dir, "envs")
    if accounts:  # users' accounts must reach their homes and the environments
        from oggmhub.backends.local.file_modes import describe_blocked

        # the folders above them (the hub sets the modes of the data dir and envs/ themselves)
        found = [p for p in (describe_blocked(os.path.dirname(args.data_dir), f"--data-dir {args.data_dir}: its folder",
                                              "--data-dir DIR, e.g. /srv/oggmhub"),
                             describe_blocked(os.path.dirname(os.path.abspath(envs)),
                                              f"the environments' folder {envs}: its folder", "$OGGMHUB_ENV_CACHE")) if p]
        for line in found:
            print(f"oggmhub hub: {line}; or run with --shared-account", file=sys.stderr)
        if found:
            return 2
    os.makedirs(args.data_dir, mode=0o711 if accounts else 0o700, exist_ok=True)
    print(f"oggmhub: starting the local hub on http://{args.ip}:{args.port} "
          f"(data in {os.path.abspath(args.data_dir)})", flush=True)
    from oggmhub.backends.local.cgroups import describe

    print(f"oggmhub: {describe()}", flush=True)
    print(f"oggmhub: {run_as_line(accounts, args.shared_account)}; environments are built into {envs}", flush=True)
    command = [sys.executable, "-m", "jupyterhub", "-f", args.config]
    os.chdir(os.path.abspath(args.data_dir))
    os.execve(sys.executable, command, hub_environment(args))


def run_as_line(accounts, shared):
    """The start-up line saying which system account users' servers run as."""
    if accounts:
        return "users' servers run as a system account each (oggm-<username>; homes mode 0700)"
    import pwd

    me = pwd.getpwuid(os.geteuid()).pw_name
    if shared:
        return f"users' servers all run as {me} (--shared-account): users can read each other's files"
    return (f"users' servers run as {me}, the hub's own account (the hub is not root): only one hub user "
            "may start a server; --shared-account lets several share it, knowingly")


def register(commands):
    """The ``hub`` verb."""
    hub = commands.add_parser("hub", help="start the local hub on this machine")
    add_hub_arguments(hub)
    hub.set_defaults(func=start_hub)
