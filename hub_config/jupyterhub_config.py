# The local hub: one machine, no Kubernetes, no Docker.
#
# Started by `oggmhub hub` (see README), which sets the variables below from its options.
# Every setting can also be changed the usual JupyterHub way, in a file passed with
# `oggmhub hub --config-extra FILE` or by editing this one.
#
#   OGGMHUB_DATA_DIR         hub database, cookie secret, homes, built environments (./data)
#   OGGMHUB_IP, OGGMHUB_PORT where users reach the hub (127.0.0.1, 8000)
#   OGGMHUB_HUB_PORT         the hub's internal port (8081); the proxy's API uses HUB_PORT+1
#   OGGMHUB_CATALOG          the catalog (hub_config/catalog.yaml)
#   OGGMHUB_IMAGES           the environments' build contexts, one folder each (images/)
#   OGGMHUB_ENV_CACHE        where built environments are kept (<data dir>/envs)
#   OGGMHUB_ADMIN            the first admin's username (admin)
#   OGGMHUB_IDLE_TIMEOUT     seconds of inactivity before a server is culled (3600; 0: never)
#   OGGMHUB_STOP_SERVERS_ON_EXIT   non-empty: stop users' servers when the hub stops (--stop-servers-on-exit)
#   OGGMHUB_COHORT_CHECK_INTERVAL  seconds between checks that stop servers of ended cohorts (60; 0: never)
#   OGGMHUB_SHARED_ACCOUNT   non-empty: every server runs as the hub's own system user (--shared-account);
#                            otherwise, as root, each user's server runs as a system account of its own
#   OGGMHUB_ACCOUNT_PREFIX   the start of those accounts' names (oggm-)
#   OGGMHUB_SCRATCH_CLEAN_INTERVAL seconds between passes of the scratch-cleaner service (3600)
#   OGGMHUB_CONFIG_EXTRA     config files loaded at the end of this one (--config-extra FILE, repeatable;
#                            separated by ':'), e.g. c.Welcome.* or c.JupyterHub.public_url
#
# Launch links, badges and the bookmarklet on /hub/datasets take the hub's address from
# c.JupyterHub.public_url (e.g. "https://hub.example.org/"), never from a request's Host
# header; unset, they are relative (/hub/launch?...) and the page completes them in the browser.
import os
import sys

c = get_config()  # noqa: F821 (provided by JupyterHub)

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(here)
data_dir = os.path.abspath(os.environ.get("OGGMHUB_DATA_DIR") or os.path.join(repo, "data"))
os.makedirs(data_dir, mode=0o700, exist_ok=True)  # 0711 once users have accounts (see file_modes)
hub_port = int(os.environ.get("OGGMHUB_HUB_PORT", "8081"))

# --- network: the proxy faces users, everything else stays on loopback ------------------
c.JupyterHub.ip = os.environ.get("OGGMHUB_IP", "127.0.0.1")
c.JupyterHub.port = int(os.environ.get("OGGMHUB_PORT", "8000"))
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = hub_port
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{hub_port + 1}"
c.ConfigurableHTTPProxy.command = [os.path.join(repo, "node_modules", ".bin", "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = os.path.join(data_dir, "proxy.pid")

# --- state: survives hub restarts ----------------------------------------------------------
c.JupyterHub.db_url = "sqlite:///" + os.path.join(data_dir, "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(data_dir, "jupyterhub_cookie_secret")
# users' servers keep running while the hub restarts; the hub finds them again by pid
c.JupyterHub.cleanup_servers = bool(os.environ.get("OGGMHUB_STOP_SERVERS_ON_EXIT"))  # oggmhub hub --stop-servers-on-exit
from oggmhub.backends.local import shutdown  # noqa: E402  (says at exit which servers keep running)

shutdown.register(os.path.join(data_dir, "jupyterhub.sqlite"), c.JupyterHub.cleanup_servers)
# JupyterHub's periodic service check only logs, and a Ctrl-C during one prints its traceback
# (the service's server is gone mid-check); the hub restarts managed services that exit anyway
c.JupyterHub.service_check_interval = 0

# --- accounts: sign-up with admin approval; the first admin's password is printed once -----
c.JupyterHub.authenticator_class = "oggmhub.accounts.LocalHubAuthenticator"
c.Authenticator.admin_users = {os.environ.get("OGGMHUB_ADMIN", "admin")}
c.Authenticator.allow_all = True  # NativeAuthenticator's approval is the gate
c.NativeAuthenticator.open_signup = False
c.NativeAuthenticator.minimum_password_length = 8
c.NativeAuthenticator.check_common_password = True
c.NativeAuthenticator.allowed_failed_logins = 10
c.NativeAuthenticator.seconds_before_next_try = 60

# --- servers: the chosen environment, built from images/<env>/, home under data_dir -------
c.JupyterHub.spawner_class = "oggmhub.backends.local.spawner.LocalEnvSpawner"
# the catalog, for every part of the hub: spawners, cohorts, welcome page, launch links
c.Catalog.path = os.path.abspath(os.environ.get("OGGMHUB_CATALOG") or os.path.join(here, "catalog.yaml"))
c.LocalEnvSpawner.data_dir = data_dir
c.LocalEnvSpawner.images_dir = os.path.abspath(os.environ.get("OGGMHUB_IMAGES") or os.path.join(repo, "images"))
# who servers run as (oggmhub/backends/local/run_as.py): as root, a system account per user
c.LocalEnvSpawner.shared_account = bool(os.environ.get("OGGMHUB_SHARED_ACCOUNT"))  # oggmhub hub --shared-account
if os.environ.get("OGGMHUB_ACCOUNT_PREFIX"):
    c.LocalEnvSpawner.system_account_prefix = os.environ["OGGMHUB_ACCOUNT_PREFIX"]
# scratch files older than the catalog's storage.scratch_ttl_days go (oggmhub/storage/scratch.py)
c.JupyterHub.services = [*c.JupyterHub.get("services", []), {
    "name": "scratch-cleaner",
    "command": [sys.executable, "-m", "oggmhub.storage.scratch_service", "--data-dir", data_dir,
                "--catalog", c.Catalog.path, "--interval", os.environ.get("OGGMHUB_SCRATCH_CLEAN_INTERVAL", "3600")],
}]
# the first start of an environment builds it (minutes); later starts take seconds
c.Spawner.start_timeout = 1800
c.Spawner.http_timeout = 120

# --- cohorts: organisers' pages (/hub/cohorts) and API, state in the hub's database -------
from oggmhub.hub import configure_hub  # noqa: E402

configure_hub(c, window_check_interval=int(os.environ.get("OGGMHUB_COHORT_CHECK_INTERVAL", "60")))
if c.LocalEnvSpawner.shared_account:
    from oggmhub.backends.local.run_as import SHARED_NOTE  # noqa: E402

    c.Welcome.isolation_note = SHARED_NOTE
c.Cohorts.homes_dir = os.path.join(data_dir, "homes")  # exports of members' homes go beside it

# --- idle culling --------------------------------------------------------------------------
idle_timeout = int(os.environ.get("OGGMHUB_IDLE_TIMEOUT", "3600"))
if idle_timeout > 0:
    c.JupyterHub.services = [
        *c.JupyterHub.get("services", []),
        {
            "name": "idle-culler",
            "command": [
                sys.executable, "-m", "jupyterhub_idle_culler",
                f"--timeout={idle_timeout}",
                f"--cull-every={max(10, min(300, idle_timeout // 4))}",
            ],
        }
    ]
    c.JupyterHub.load_roles = [
        *c.JupyterHub.get("load_roles", []),
        {
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        }
    ]

# --- the admin's own settings (oggmhub hub --config-extra FILE): loaded last, so they win ----
for _extra in filter(None, os.environ.get("OGGMHUB_CONFIG_EXTRA", "").split(os.pathsep)):
    load_subconfig(_extra)  # noqa: F821 (traitlets provides it to config files)
