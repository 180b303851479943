"""The README's path, as a newcomer takes it, on the distribution's own Python.

From a fresh ``git clone`` of this repository, with ``/usr/bin:/bin`` as PATH (Debian's
``python3`` first, nothing of this machine's test setup on it), the README's first command
runs exactly as written (its port swapped for a free one, and a free internal --hub-port
added, as two hubs share this machine). Then in Chromium: sign up, approval by the first
admin (password from the banner), log in, start OGGM on the defaults, run a cell in
JupyterLab, see the server on /hub/home; Ctrl-C stops the hub in under 5 s without a
traceback, naming the server left running; a second start reuses the virtualenv and, with
--stop-servers-on-exit, stops the server with the hub.

As root (CI), the README's hub gives each user a system account of their own: ada's server
runs as ``<prefix>ada`` (a distinctive prefix per run, ``$OGGMHUB_ACCOUNT_PREFIX``, removed
afterwards), so the clone lies in a folder other users can traverse (a pytest folder is
0700) and the environments in a world-readable cache.

Stand-ins, for what this machine lacks (internet beyond the package registries): the
catalog's OGGM mirror is a local folder ($OGGMHUB_CATALOG, as the offline catalog of
tests/local_hub.py), salem's sample data a file in the home. Environments are cached per
Python in /var/cache/oggmhub-tests/envs-newcomer-<python> ($OGGMHUB_ENV_CACHE): a venv on
Debian's 3.11.2 builds its own, once; uv's and npm's caches are the machine's.
"""

import os
import pathlib
import re
import shlex
import signal
import subprocess
import time

import psutil
import pytest
import requests

from support.browser import chromium, login, new_notebook, run_cell, screenshot, sign_up
from support.local_hub import (
    REPO,
    SALEM_DATA,
    account_prefix,
    accounts_folder,
    free_port,
    remove_accounts,
    wait_until,
)

DISTRO_PYTHON = "/usr/bin/python3"
PASSWORD = "terminus-retreat-2026"


def readme_first_command():
    """The first command of the README's 'Set up' section, as a user would type it."""
    text = open(os.path.join(REPO, "README.md")).read()
    setup = text[text.index("## Set up"):]
    block = re.search(r"```bash\n(.*?)```", setup, re.S).group(1)
    line = block.strip().splitlines()[0].split("#", 1)[0].strip()
    assert line.startswith("./start-local-hub.sh"), line
    return line


class ScriptHub:
    """``start-local-hub.sh`` running in a clone, in its own process group (as in a terminal)."""

    def __init__(self, clone, command, env, log_path):
        self.clone, self.env, self.log_path = clone, env, log_path
        words = shlex.split(command)
        self.port = free_port()
        words[words.index("--port") + 1] = str(self.port)
        self.words = words + ["--hub-port", str(free_port(2))]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        data = words[words.index("--data-dir") + 1]
        self.data_dir = os.path.join(clone, data)

    def start(self, *extra, timeout=900):
        self.offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.words + list(extra), cwd=self.clone, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.started = time.monotonic()

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"start-local-hub.sh exited {self.proc.returncode}:\n{self.output()[-3000:]}")
            try:
                return requests.get(f"{self.url}/hub/api/", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, timeout, f"the hub on {self.url}", every=1)
        self.ready_s = time.monotonic() - self.started
        # its services have started (a Ctrl-C while they still import Python gets their tracebacks)
        wait_until(lambda: all(f"({name}@127.0.0.1)" in self.output() for name in ("idle-culler", "cohort-window")),
                   120, "the hub's services to call its API", every=0.5)
        time.sleep(5)  # and the others (tasks) have imported theirs, on a loaded machine
        return self

    def output(self):
        with open(self.log_path, "rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")

    def ctrl_c(self, timeout=30):
        """SIGINT to the foreground process group, as Ctrl-C in a terminal; seconds to exit."""
        start = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout)
        return time.monotonic() - start

    def kill(self):
        """Stop the hub (as Ctrl-C, then for good) and whatever of the clone still runs."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        for p in psutil.process_iter(["cmdline"]):
            if str(self.clone) in " ".join(p.info["cmdline"] or []):
                p.kill()
        time.sleep(1)
        with open("/proc/mounts") as f:  # a mount whose process was killed: unmount it (lazily)
            stale = [line.split()[1] for line in f if line.split()[1].startswith(str(self.clone))]
        for path in stale:
            subprocess.run(["fusermount", "-u", "-z", path], capture_output=True)


def offline_catalog(folder):
    """The repository's catalog with OGGM's mirror in a local folder (no bucket reachable here)."""
    import yaml

    with open(os.path.join(REPO, "hub_config", "catalog.yaml")) as f:
        catalog = yaml.safe_load(f)
    os.makedirs(folder / "oggm-mirror")
    catalog["datasets"]["oggm-mirror"]["source"] = str(folder / "oggm-mirror")
    with open(folder / "catalog.yaml", "w") as f:
        yaml.safe_dump(catalog, f, sort_keys=False)
    return str(folder / "catalog.yaml")


def singleuser_processes(clone):
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "jupyterhub-singleuser" in cmd and "newcomer" in cmd:
            found.append(p)
    return found


@pytest.mark.skipif(not os.path.exists(DISTRO_PYTHON), reason="needs the distribution's /usr/bin/python3")
def test_the_readme_path_on_the_distributions_python(tmp_path):
    with accounts_folder("oggmhub-newcomer-") as folder:
        prefix = account_prefix() if os.geteuid() == 0 else None
        try:
            readme_path(tmp_path, pathlib.Path(folder) / "oggmhub", prefix)
        finally:
            if prefix:
                remove_accounts(prefix)


def readme_path(tmp_path, clone, prefix):
    subprocess.run(["git", "clone", "-q", REPO, str(clone)], check=True)
    version = subprocess.run([DISTRO_PYTHON, "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # the offline stand-in for the catalog's mirror bucket (see the module's docstring)
    catalog = offline_catalog(tmp_path / "offline")
    env = {"PATH": "/usr/bin:/bin", "HOME": os.path.expanduser("~"), "LANG": "C.UTF-8",
           "OGGMHUB_CATALOG": catalog,
           "OGGMHUB_ENV_CACHE": f"/var/cache/oggmhub-tests/envs-newcomer-{version}"}
    if prefix:
        env["OGGMHUB_ACCOUNT_PREFIX"] = prefix
    hub = ScriptHub(clone, readme_first_command(), env, str(tmp_path / "start-local-hub.log"))
    try:
        hub.start()
        first = hub.output()
        assert "creating the hub's virtualenv" in first and f"Python {version}" in first, first[:2000]
        [password] = re.findall(r"password: (\S+)", first)
        assert (clone / ".venv" / "bin" / "python").exists()
        assert "Traceback" not in first, first[-3000:]

        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            sign_up(page, hub, "ada", PASSWORD)
            admin = browser.new_page()
            login(admin, hub, "admin", password)
            admin.goto(f"{hub.url}/hub/authorize/ada")
            admin.close()
            login(page, hub, "ada", PASSWORD)
            # (before the first start: the hub hands the home, with this in it, to ada's account)
            shapes = os.path.join(hub.data_dir, "homes", "ada", ".salem_cache", SALEM_DATA, "shapes", "world_borders")
            os.makedirs(shapes, exist_ok=True)
            open(os.path.join(shapes, "world_borders.shp"), "w").close()
            page.goto(f"{hub.url}/hub/spawn")
            screenshot(page, "newcomer-picker")
            page.get_by_role("button", name="Start").click()  # the defaults: OGGM, Small
            seen = set()
            deadline = time.monotonic() + 900
            while not re.search(r"/user/ada/lab", page.url):
                assert time.monotonic() < deadline, f"OGGM did not start; progress seen: {sorted(seen)[-10:]}"
                bar = page.locator("#progress-message")
                if bar.count():
                    seen.add(bar.inner_text())
                page.wait_for_timeout(500)
            page.locator(".jp-Launcher, .jp-NotebookPanel").first.wait_for(timeout=120_000)
            new_notebook(page, hub)
            out = run_cell(page, "import oggm, sys\nprint('OGGM', oggm.__version__, sys.version.split()[0])")
            try:  # the print may follow other output (e.g. salem's)
                page.get_by_text(f"OGGM 1.6.3 {version}").wait_for(timeout=120_000)
            finally:
                screenshot(page, "newcomer-notebook")
                print("home:", sorted(os.listdir(os.path.join(hub.data_dir, "homes", "ada"))), out)
            page.goto(f"{hub.url}/hub/home")
            assert page.locator("#oggmhub-running-environment").inner_text() == "OGGM"
            assert "Small" in page.locator("#oggmhub-running-size").inner_text()
            screenshot(page, "newcomer-home")
        [server] = singleuser_processes(clone)
        if prefix:  # as root, by default: ada's own system account, no --allow-root
            import pwd

            assert server.uids().real == pwd.getpwnam(f"{prefix}ada").pw_uid != 0
            assert "--allow-root" not in server.cmdline()
            assert "users' servers run as a system account each" in first

        took = hub.ctrl_c()
        out = hub.output()
        assert took < 5, f"Ctrl-C took {took:.1f} s"
        assert "Traceback" not in out and "KeyboardInterrupt" not in out, out[-3000:]
        assert "oggmhub: 1 server keeps running (ada)" in out and "--stop-servers-on-exit" in out, out[-2000:]
        assert singleuser_processes(clone), "the server outlives the hub"

        hub.start("--stop-servers-on-exit", timeout=300)
        again = hub.output()
        assert "installing" not in again and "creating the hub's virtualenv" not in again, again[:2000]
        hub.ctrl_c(timeout=60)
        assert "Traceback" not in hub.output()
        wait_until(lambda: not singleuser_processes(clone), 20, "ada's server stopped with the hub")
    finally:
        if hub.proc is not None:
            hub.kill()
        for p in singleuser_processes(clone):
            p.kill()
