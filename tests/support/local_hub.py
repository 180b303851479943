"""Start a real local hub (``oggmhub hub``: JupyterHub + configurable-http-proxy) for tests.

Used by the local-hub tests and benchmarks. Everything listens on 127.0.0.1 on free
ports; the hub runs as a subprocess exactly as the README's command runs it.

Who servers run as is explicit (``mode``): ``"shared"`` (the default here) passes
``--shared-account``, so every server runs as the hub's own user (root on CI) as before
accounts existed: feature tests stay as fast as they were and need no folders that other
users can reach. ``"accounts"`` runs the hub as the README does as root, each user's
server as a system account of its own (:mod:`oggmhub.backends.local.system_users`), with a
distinctive account prefix per hub (``$OGGMHUB_ACCOUNT_PREFIX``) whose accounts are removed
when the hub stops; its data directory must be reachable by other users
(:func:`accounts_folder` makes one) and its environments are built, with Debian's own
Python, into :data:`ACCOUNTS_ENV_CACHE`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time

import requests

from support import paths as _paths

# salem (imported by oggm) fetches sample data into ~/.salem_cache on first import; the
# OGGM image downloads it at build time and its `start` script links it into the home.
# This machine has no internet, so tests put the one file salem checks for in the home
# instead (see LocalHub.salem_stand_in). Nothing reads it.
SALEM_DATA = "salem-sample-data-454bf696324000d198f574a1bf5bc56e3e489051"
REPO = str(_paths.REPO)
# environments every account can run (root's ~/.cache is closed to them); one per machine
ACCOUNTS_ENV_CACHE = os.environ.get("OGGMHUB_TEST_ACCOUNTS_ENV_CACHE") or "/var/cache/oggmhub-tests/envs"
MODES = ("shared", "accounts")


def _shared_data():
    """``$OGGMHUB_SHARED_DATA``, else the first ``shared/data`` beside the checkout or above it."""
    if os.environ.get("OGGMHUB_SHARED_DATA"):
        return os.environ["OGGMHUB_SHARED_DATA"]
    for up in (REPO, os.path.dirname(REPO), os.path.dirname(os.path.dirname(REPO))):
        candidate = os.path.join(up, "shared", "data") if up != REPO else os.path.join(up, "..", "shared", "data")
        if os.path.isdir(candidate):
            return os.path.abspath(candidate)
    return os.path.abspath(os.path.join(REPO, "..", "shared", "data"))


SHARED_DATA = _shared_data()
SAMPLE_COMMIT = "8af40f89620c6bd72f3485a777a018dcacb99d94"  # oggm 1.6.3's SAMPLE_DATA_COMMIT
SAMPLE_ZIP = os.path.join(SHARED_DATA, f"oggm-sample-data-{SAMPLE_COMMIT}.zip")


def sample_zip():
    """OGGM's real sample data (../shared/data), or a pytest skip saying it is absent."""
    if not os.path.isfile(SAMPLE_ZIP):
        import pytest

        pytest.skip(f"OGGM's sample data is absent: {SAMPLE_ZIP} (see shared/data/README.md); "
                    "tests of real glacier runs need it")
    return SAMPLE_ZIP


def fill_oggm_mirror(folder):
    """Fill ``folder`` as a hub's OGGM mirror, from OGGM's sample-data zip when it is here
    (``oggmhub datasets mirror``'s own code); empty (OGGM then finds nothing) when not."""
    if not os.path.isfile(SAMPLE_ZIP):
        return False
    from oggmhub.cli import mirror

    fs, root = mirror.destination(folder)
    return mirror.mirror_sample_zip(SAMPLE_ZIP, fs, root, log=lambda *_: None).ok


def free_port(count=1):
    """A port p such that p..p+count-1 are free on 127.0.0.1 (best effort)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + count > 65535:
            continue
        socks = []
        try:
            for p in range(port, port + count):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


@contextlib.contextmanager
def running_hub(data_dir, env=None, mode="shared", **kwargs):
    """A started :class:`LocalHub` that builds environments into the shared cache
    (``OGGMHUB_ENV_CACHE``, so test modules reuse one OGGM build; :data:`ACCOUNTS_ENV_CACHE`
    in accounts mode); stopped, with its users' servers, afterwards."""
    hub = LocalHub(data_dir, env={"OGGMHUB_ENV_CACHE": env_cache(mode), **(env or {})}, mode=mode, **kwargs).start()
    try:
        yield hub
    finally:
        hub.stop(servers=True)


def env_cache(mode="shared"):
    """Where a test hub of ``mode`` builds its environments."""
    from oggmhub.backends.local.environments import default_root

    return ACCOUNTS_ENV_CACHE if mode == "accounts" else str(default_root())


@contextlib.contextmanager
def accounts_folder(prefix="oggmhub-accounts-"):
    """A fresh folder under /tmp that every account can traverse (mode 0711), removed after."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(folder, 0o711)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def account_prefix():
    """A distinctive account prefix for one test hub (``t<6 hex>-``)."""
    import secrets

    return f"t{secrets.token_hex(3)}-"


def remove_accounts(prefix):
    """Remove every system account starting with ``prefix`` (what a test hub created)."""
    from oggmhub.backends.local import system_users

    for name in system_users.accounts_with_prefix(prefix):
        system_users.remove(name)


def materials_repo(root):
    """A bare git repository with one notebook under ``root``; its file:// URL (cohort
    materials with no network)."""
    root = os.fspath(root)
    src = os.path.join(root, "src")
    git = ["git", "-C", src, "-c", "user.email=t@example.org", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", "-b", "main", src], check=True)
    with open(os.path.join(src, "01-glacier-flowline.ipynb"), "w") as f:
        f.write('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "materials"], check=True)
    bare = os.path.join(root, "tutorials.git")
    subprocess.run(["git", "clone", "-q", "--bare", src, bare], check=True)
    return f"file://{bare}"


def wait_until(check, timeout, what, every=0.2):
    """``check()``'s first truthy value, asked every ``every`` s; TimeoutError naming
    ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what} (waited {timeout} s)")


def _xsrf(session):
    """The session's newest _xsrf cookie (JupyterHub may set one per path)."""
    values = [c.value for c in session.cookies if c.name == "_xsrf"]
    return values[-1] if values else ""


class LocalHub:
    """A running local hub with helpers to sign up, log in and call the REST API."""

    def __init__(self, data_dir, catalog=None, idle_timeout=0, env=None, images_dir=None, config=None, mode="shared"):
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: one of {', '.join(MODES)}")
        self.mode = mode
        self.data_dir = str(data_dir)
        self.idle_timeout = idle_timeout
        self.env = dict(env or {})
        self.account_prefix = None
        if mode == "accounts":
            from oggmhub.backends.local.file_modes import describe_blocked

            problem = describe_blocked(self.data_dir, f"the test hub's data directory {self.data_dir}", "use accounts_folder()")
            if problem:
                raise ValueError(problem)
            self.account_prefix = self.env.setdefault("OGGMHUB_ACCOUNT_PREFIX", account_prefix())
        if images_dir:
            self.env["OGGMHUB_IMAGES"] = images_dir
        self.catalog = catalog or self._offline_catalog()
        self.config = config
        self.port = free_port()
        self.hub_port = free_port(2)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(self.data_dir, "hub.log")
        self.proc = None
        self.admin_password = None

    def _offline_catalog(self):
        """The repository's catalog, with OGGM's mirror in a local folder instead of a
        bucket this machine cannot reach (a local path is a catalog source like any other)."""
        import yaml

        with open(os.path.join(REPO, "hub_config", "catalog.yaml")) as f:
            catalog = yaml.safe_load(f)
        # beside the data directory, never shared with another hub's
        folder = os.path.abspath(self.data_dir).rstrip("/") + "-config"
        mirror = os.path.join(folder, "oggm-mirror")
        os.makedirs(mirror, exist_ok=True)
        fill_oggm_mirror(mirror)
        # a hub's own mirror, in OGGM's download-cache layout: only the source changes (README)
        catalog["datasets"]["oggm-mirror"].update(source=mirror)
        path = os.path.join(folder, "catalog.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(catalog, f, sort_keys=False)
        self.env.setdefault("OGGMHUB_IMAGES", os.path.join(REPO, "images"))
        return path

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, timeout=60):
        os.makedirs(self.data_dir, exist_ok=True)
        log = open(self.log_path, "ab")
        command = [
            sys.executable, "-m", "oggmhub", "hub",
            "--port", str(self.port), "--hub-port", str(self.hub_port),
            "--data-dir", self.data_dir, "--catalog", self.catalog,
            "--idle-timeout", str(self.idle_timeout),
        ] + (["--config", self.config] if self.config else []) + (["--shared-account"] if self.mode == "shared" else [])
        self.proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            env={**os.environ, **self.env}, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the hub exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/hub/api/", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        else:
            self._stop_hub(signal.SIGTERM, 10)  # nothing of a hub that never answered is left running
            raise RuntimeError(f"the hub did not answer within {timeout}s:\n{self.log()}")
        found = re.findall(r"password: (\S+)", self.log())
        if found:
            self.admin_password = found[-1]
        return self

    def stop_servers(self, timeout=60):
        """Stop every user's server through the admin API (the hub leaves them running)."""
        admin = self.admin()
        for user in self.api(admin, "GET", "/users").json():
            if user.get("servers"):
                self.api(admin, "DELETE", f"/users/{user['name']}/server")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            users = self.api(admin, "GET", "/users").json()
            if not any(u.get("servers") or u.get("pending") for u in users):
                return
            time.sleep(0.3)
        busy = {u["name"]: (u.get("servers"), u.get("pending")) for u in users if u.get("servers") or u.get("pending")}
        raise TimeoutError(f"servers did not stop: {busy}")

    def stop(self, sig=signal.SIGTERM, timeout=30, servers=False):
        """Stop the hub; with servers=True, its users' servers first (and, in accounts mode,
        remove the accounts it created).

        Without, servers keep running (cleanup_servers is off), as in a hub restart.
        """
        try:
            if servers and self.proc and self.proc.poll() is None:
                self.stop_servers()
        finally:
            self._stop_hub(sig, timeout)
            if servers:
                self.unmount_homes()
            if servers and self.account_prefix:
                remove_accounts(self.account_prefix)

    def unmount_homes(self):
        """Unmount the homes mounted from their quota images (they stay mounted across a
        hub's restarts, as a real hub's do), so that a test leaves no loop device behind."""
        homes = os.path.join(self.data_dir, "homes")
        if os.path.isdir(homes):
            for name in os.listdir(homes):
                if os.path.ismount(os.path.join(homes, name)):
                    subprocess.run(["umount", "--lazy", os.path.join(homes, name)], check=False)

    def account(self, username):
        """The system account of hub user ``username`` (accounts mode), or None."""
        from oggmhub.backends.local import system_users

        return system_users.lookup(username, system_users.hub_id(self.data_dir), self.account_prefix)

    def _stop_hub(self, sig, timeout):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    # --- users -------------------------------------------------------------------------

    def signup(self, username, password):
        s = requests.Session()
        s.get(f"{self.url}/hub/signup")
        r = s.post(f"{self.url}/hub/signup", data={
            "username": username, "signup_password": password,
            "signup_password_confirmation": password, "_xsrf": _xsrf(s),
        })
        r.raise_for_status()
        return r.text

    def login(self, username, password):
        """A logged-in requests session, or raise if the login was refused."""
        s = requests.Session()
        s.get(f"{self.url}/hub/login")
        r = s.post(f"{self.url}/hub/login", data={
            "username": username, "password": password, "_xsrf": _xsrf(s),
        }, allow_redirects=False)  # following it could start a server (no options form)
        if "jupyterhub-hub-login" not in s.cookies:
            raise PermissionError(f"login as {username} refused (status {r.status_code})")
        s.get(f"{self.url}/hub/home")  # refresh _xsrf after the login redirect
        s.headers["X-XSRFToken"] = _xsrf(s)
        return s

    def admin(self):
        return self.login("admin", self.admin_password)

    def approve(self, username):
        r = self.admin().get(f"{self.url}/hub/authorize/{username}")
        r.raise_for_status()

    def new_user(self, username, password="correct-horse-42"):
        """Sign up, get approved by the admin, log in: a session for a new user."""
        self.signup(username, password)
        self.approve(username)
        return self.login(username, password)

    def salem_stand_in(self, username):
        """Stand in for salem's sample data in a user's home (see SALEM_DATA)."""
        home = os.path.join(self.data_dir, "homes", username)
        shapes = os.path.join(home, ".salem_cache", SALEM_DATA, "shapes", "world_borders")
        os.makedirs(shapes, exist_ok=True)
        open(os.path.join(shapes, "world_borders.shp"), "w").close()
        owner = os.stat(home)
        if owner.st_uid != os.getuid():  # the user's account has the home already: theirs too
            for root, dirs, files in os.walk(os.path.join(home, ".salem_cache")):
                for name in [".", *dirs, *files]:
                    os.chown(os.path.join(root, name), owner.st_uid, owner.st_gid)

    # --- servers -----------------------------------------------------------------------

    def api(self, session, method, path, **kwargs):
        return session.request(method, f"{self.url}/hub/api{path}", **kwargs)

    def wait_for_server(self, session, username, timeout=900):
        """Wait until the user's server is ready; return the user model."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api(session, "GET", f"/users/{username}").json()
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                return model
            if not model.get("pending") and not server:
                raise RuntimeError(f"{username}'s server failed to start:\n{self.log()[-4000:]}")
            time.sleep(0.5)
        raise TimeoutError(f"{username}'s server not ready in {timeout}s")
