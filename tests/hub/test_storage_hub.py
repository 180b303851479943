"""Home quotas on a real local hub as root, one system account per user (issue 24): one hub
for the module, many checks on it.

A notebook writing in a loop gets ENOSPC at its quota (+-5%) while another user starts a
server and the hub's API keeps answering in under 2 s; `df` in the session shows the
quota; the admins' table, CSV and JSON show the figures written (others get 403); the
full home's next start is a rescue start showing the largest folders; after deleting, a
normal start; JupyterLab's status bar (Chromium) shows memory against the size's limit
and the home's disk use against its quota, warning from 80% of it.
"""

import json
import os
import re
import subprocess
import threading
import time

import pytest
import requests
import yaml

from oggmhub.backends.local import home_images
from support.browser import chromium, login, screenshot
from support.kernels import kernel, run
from support.local_hub import LocalHub, accounts_folder, env_cache

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="home images are mounted by a hub running as root")

MiB = 1024**2
QUOTA = 96 * MiB  # the filler's own (storage.users.filler)
DEFAULT = "256Mi"  # everyone else's
PASSWORD = "firn-line-2026"

DF = """
import json, os
st = os.statvfs(os.environ["HOME"])
print(json.dumps({"size": st.f_blocks * st.f_frsize, "used": (st.f_blocks - st.f_bfree) * st.f_frsize,
                  "home": os.environ["HOME"], "rescue": os.environ.get("OGGMHUB_HOME_RESCUE"),
                  "ttl": os.environ.get("OGGMHUB_SCRATCH_TTL_DAYS")}))
"""

# about 10 s of writing: 1 MiB at a time, as a notebook saving model output would
FILL = """
import json, os, time
home = os.environ["HOME"]
st = os.statvfs(home)
before = (st.f_blocks - st.f_bfree) * st.f_frsize
os.makedirs(os.path.join(home, "runs"), exist_ok=True)
scratch = os.path.join(os.environ["OGGMHUB_SCRATCH"], "cache.bin")
with open(scratch, "wb") as f:
    f.write(os.urandom(5 * 1024 * 1024))
stale = os.path.join(os.environ["OGGMHUB_SCRATCH"], "stale.bin")  # past the catalog's TTL of 7 days
with open(stale, "wb") as f:
    f.write(b"old output")
os.utime(stale, (time.time() - 8 * 86400,) * 2)
fd = os.open(os.path.join(home, "runs", "output.bin"), os.O_WRONLY | os.O_CREAT, 0o600)
written, err, block = 0, None, os.urandom(1024 * 1024)
try:
    while written < 10 * 1024**3:
        written += os.write(fd, block)
        time.sleep(0.1)
except OSError as e:
    err = e.errno
os.close(fd)
print(json.dumps({"before": before, "written": written, "errno": err}))
"""


@pytest.fixture(scope="module")
def hub():
    with accounts_folder() as folder:
        data_dir = os.path.join(folder, "data")
        hub = LocalHub(data_dir, mode="accounts", env={"OGGMHUB_ENV_CACHE": env_cache("accounts"),
                                                        "OGGMHUB_COHORT_CHECK_INTERVAL": "0",
                                                        "OGGMHUB_SCRATCH_CLEAN_INTERVAL": "60"})
        with open(hub.catalog) as f:
            catalog = yaml.safe_load(f)
        catalog["storage"] = {"home_quota": DEFAULT, "users": {"filler": "96Mi"}, "scratch_ttl_days": 7}
        with open(hub.catalog, "w") as f:
            yaml.safe_dump(catalog, f, sort_keys=False)
        hub.start()
        try:
            yield hub
        finally:
            try:
                hub.stop(servers=True)
            finally:
                for point in home_images.mounted_images(data_dir).values():
                    subprocess.run(["umount", point])


@pytest.fixture(scope="module")
def users(hub):
    return {name: hub.new_user(name, PASSWORD) for name in ("filler", "other")}


def start(hub, session, name):
    r = hub.api(session, "POST", f"/users/{name}/server", json={"profile": "oggm"})
    assert r.status_code in (201, 202), r.text + hub.log()[-6000:]


def stop(hub, session, name, timeout=120):
    hub.api(session, "DELETE", f"/users/{name}/server")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = hub.api(session, "GET", f"/users/{name}").json()
        if not model.get("servers") and not model.get("pending"):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{name}'s server did not stop")


def home_page(hub, session):
    r = session.get(f"{hub.url}/hub/home")
    r.raise_for_status()
    return r.text


@pytest.fixture(scope="module")
def filled(hub, users):
    """The filler writes until ENOSPC while `other` starts a server; the API's latencies."""
    session = users["filler"]
    start(hub, session, "filler")
    hub.wait_for_server(session, "filler")
    token, _, ws = kernel(hub, session, "filler")
    df = json.loads(run(ws, token, DF).strip().splitlines()[-1])
    result, latencies, done = {}, [], threading.Event()

    def ask_the_api():  # throughout the fill and the other start, as a third party would
        while not done.is_set():
            began = time.monotonic()
            hub.api(users["other"], "GET", "/users/other").raise_for_status()
            latencies.append(time.monotonic() - began)
            time.sleep(0.2)

    poller = threading.Thread(target=ask_the_api)
    writer = threading.Thread(target=lambda: result.update(json.loads(run(ws, token, FILL, timeout=600)
                                                                      .strip().splitlines()[-1])))
    poller.start()
    writer.start()
    try:
        start(hub, users["other"], "other")  # the POST itself waits up to 10 s (slow_spawn_timeout)
        hub.wait_for_server(users["other"], "other")
        writer.join()
    finally:
        done.set()
        poller.join()
    return {"df": df, "fill": result, "latencies": latencies}


def test_df_in_the_session_shows_the_users_own_quota(filled, hub):
    df = filled["df"]
    assert df["home"] == os.path.join(hub.data_dir, "homes", "filler")
    assert abs(df["size"] - QUOTA) <= 0.01 * QUOTA, df
    assert df["rescue"] is None and df["ttl"] == "7"


def test_writer_gets_enospc_at_the_quota_while_another_user_starts(filled):
    fill = filled["fill"]
    assert fill["errno"] == 28, fill  # ENOSPC, not a hang nor another error
    assert abs(fill["before"] + fill["written"] - QUOTA) <= 0.05 * QUOTA, fill
    assert max(filled["latencies"]) < 2, sorted(filled["latencies"])[-5:]
    assert len(filled["latencies"]) > 30, (filled["fill"], filled["df"])  # asked throughout (>= 10 s of writing)


def test_home_page_warns_the_full_user_and_not_the_other(filled, hub, users):
    page = home_page(hub, users["filler"])
    assert 'id="oggmhub-home-storage" data-level="danger"' in page or 'data-level="over"' in page
    assert 'id="oggmhub-home-quota">96 MiB<' in page
    assert "unchanged for 7 days are removed" in page  # the scratch TTL, shown to the user
    other = home_page(hub, users["other"])
    assert 'data-level="ok"' in other and 'id="oggmhub-home-quota">256 MiB<' in other


def test_admin_table_csv_and_json_show_the_figures_written(filled, hub, users):
    admin = hub.admin()
    rows = {r["user"]: r for r in hub.api(admin, "GET", "/storage/usage").json()["users"]}
    filler = rows["filler"]
    assert filler["home_quota"] == QUOTA and filler["home_used"] >= 0.95 * QUOTA
    assert filler["scratch_used"] >= 5 * MiB and filler["last_activity"]
    assert rows["other"]["home_quota"] == 256 * MiB and rows["other"]["home_used"] < 16 * MiB
    csv = hub.api(admin, "GET", "/storage/usage", params={"format": "csv"}).text.splitlines()
    assert csv[0] == "user,home_used,home_quota,home_percent,scratch_used,last_activity"
    line = next(line for line in csv if line.startswith("filler,"))
    assert line.split(",")[1:3] == [str(filler["home_used"]), str(QUOTA)]
    page = admin.get(f"{hub.url}/hub/storage")
    assert page.status_code == 200 and 'data-user="filler"' in page.text
    download = admin.get(f"{hub.url}/hub/storage/usage.csv")
    assert download.status_code == 200 and "filler," in download.text
    for session in (users["other"], requests.Session()):  # a user, and nobody
        assert hub.api(session, "GET", "/storage/usage").status_code == 403
        assert session.get(f"{hub.url}/hub/storage", allow_redirects=False).status_code in (302, 403)
    assert users["other"].get(f"{hub.url}/hub/storage").status_code == 403


def test_full_home_gets_a_rescue_start_then_a_normal_one_after_deleting(filled, hub, users):
    session = users["filler"]
    stop(hub, session, "filler")
    start(hub, session, "filler")
    hub.wait_for_server(session, "filler")
    assert hub.log().count("Rescue start: your home is full") == 1
    page = home_page(hub, session)
    assert 'id="oggmhub-home-largest"' in page and "<code>runs</code>" in page  # the largest folder first
    token = hub.api(session, "POST", "/users/filler/tokens", json={"note": "rescue"}).json()["token"]
    contents = f"{hub.url}/user/filler/api/contents/runs/output.bin"
    headers = {"Authorization": f"token {token}"}
    assert requests.delete(contents, headers=headers, timeout=30).status_code == 204  # JupyterLab's delete
    _, _, ws = kernel(hub, session, "filler")
    assert json.loads(run(ws, token, DF).strip().splitlines()[-1])["rescue"] == "1"
    stop(hub, session, "filler")
    start(hub, session, "filler")
    hub.wait_for_server(session, "filler")
    assert hub.log().count("Rescue start: your home is full") == 1  # this start is a normal one
    assert 'data-level="ok"' in home_page(hub, session)


def test_scratch_files_past_the_ttl_are_removed_by_the_service_and_the_rest_stays(filled, hub):
    scratch = os.path.join(hub.data_dir, "scratch", "filler")
    deadline = time.monotonic() + 150  # the service passes every 60 s here
    while os.path.exists(os.path.join(scratch, "stale.bin")) and time.monotonic() < deadline:
        time.sleep(2)
    assert not os.path.exists(os.path.join(scratch, "stale.bin"))
    assert os.path.getsize(os.path.join(scratch, "cache.bin")) == 5 * MiB  # inside the TTL: kept
    assert "scratch of filler: removed 1 older than 7 days" in hub.log() and "stale.bin" in hub.log()


STATUS = '[title="Current resource usage"]'  # jupyter-resource-usage's status bar item
UNITS = {"B": 1, "KB": 1024, "MB": MiB, "GB": 1024**3, "TB": 1024**4}
WRITE = """
import os
with open(os.path.join(os.environ["HOME"], "{name}"), "wb") as f:
    f.write(b"x" * {size})
    os.fsync(f.fileno())
print("written")
"""


def status_bar(page, pattern, timeout=60):
    """The status bar's usage text once it matches ``pattern`` (the item polls every 5 s)."""
    item, text = page.locator(STATUS).first, ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if item.count():
            text = item.inner_text()
            if re.search(pattern, text):
                return text, item
        time.sleep(1)
    screenshot(page, "status-bar-usage")
    raise AssertionError(f"the status bar never showed {pattern!r}; last: {text!r}")


def figures(text, label):
    """(used, limit) in bytes from e.g. ``Disk: 64.23 / 250.00 MB``."""
    used, limit, unit = re.search(rf"{label}: ([\d.]+) / ([\d.]+) (\w+)", text).groups()
    return float(used) * UNITS[unit], float(limit) * UNITS[unit]


def test_jupyterlab_status_bar_shows_memory_against_the_size_and_disk_against_the_quota(filled, hub, users):
    token, _, ws = kernel(hub, users["other"], "other")  # running since `filled`, quota 256 MiB
    assert "written" in run(ws, token, WRITE.format(name="model-output.bin", size=64 * MiB))
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        login(page, hub, "other", PASSWORD)
        page.goto(f"{hub.url}/user/other/lab")
        text, item = status_bar(page, r"Disk: .* / .*Mem: .* / ")
        screenshot(page, "status-bar-usage")
        disk_used, disk_total = figures(text, "Disk")
        assert abs(disk_total - 256 * MiB) <= 0.05 * 256 * MiB, text  # the quota, not the machine's disk
        assert 64 * MiB <= disk_used < 0.5 * 256 * MiB, text
        mem_used, mem_limit = figures(text, "Mem")
        assert mem_limit == 4 * 1024**3 and 0 < mem_used < mem_limit, text  # OGGM's Small: 4Gi
        assert re.search(r"CPU: [\d.]+ %", text), text
        calm = item.evaluate("e => getComputedStyle(e).backgroundColor")
        # past 80% of the quota (storage's first warning) the item turns red
        more = {}  # Playwright's sync API holds this thread's event loop: the kernel is driven from another
        writer = threading.Thread(target=lambda: more.update(
            out=run(ws, token, WRITE.format(name="more-output.bin", size=150 * MiB))))
        writer.start()
        writer.join()
        assert "written" in more.get("out", ""), more
        deadline = time.monotonic() + 60
        while item.evaluate("e => getComputedStyle(e).backgroundColor") == calm and time.monotonic() < deadline:
            time.sleep(1)
        screenshot(page, "status-bar-usage-warning")
        text = item.inner_text()
        assert item.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 210, 210)", (calm, text)
        assert figures(text, "Disk")[0] >= 0.8 * 256 * MiB, text
