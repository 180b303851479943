"""The Kubernetes deployment end to end in Chromium (tests/support/deployment: the chart's
own hub config with helm-values/oggmhub.yaml, the proxy, the API emulator, pods that run).

A site's values add sign-up with approval (the hub's NativeAuthenticator subclass, as the
local hub has it; helm-values/oggmhub.yaml leaves the authenticator to the site). Then: the
welcome page lists the catalog's environments, ada signs up, the admin approves, ada picks
OGGM, JupyterLab opens through the proxy, a cell runs in the pod; a DOI launch link opens
OGGM's mirror (a bucket, mounted by the sidecar); stopping leaves nothing behind in the API
or among processes. Screenshots go to artifacts/.
"""

import os
import re
import secrets
import time

import psutil
import pytest
import requests
import yaml

from support.browser import chromium, login, new_notebook, run_cell, screenshot, sign_up, start_from_picker
from support.deployment import Deployment, admin_service
from support.paths import CATALOG

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pods need mount namespaces and system accounts: run as root")

PASSWORD = "moraine-survey-2026"
TOKEN = secrets.token_hex(16)
# the site's own values: its admin (helm-values/oggmhub.yaml sets the authenticator)
SITE = {"hub": {"config": {"Authenticator": {"admin_users": ["admin"]}}}}


OGGM_DOI = "10.5194/gmd-12-909-2019"  # the catalog's OGGM mirror
GCS_BUCKETS = {"oggm-mirror-e2e": {"mirror/MIRROR.txt": b"oggm mirror"}}  # the gcs fixture fills it


@pytest.fixture(scope="module")
def hub(tmp_path_factory, gcs):
    root = tmp_path_factory.mktemp("deployment")
    # OGGM's mirror in a bucket (OGGM's server cannot be reached from here): the GCS emulator
    data = yaml.safe_load(CATALOG.read_text())
    data["datasets"]["oggm-mirror"].update(source="gs://oggm-mirror-e2e/mirror", endpoint=gcs.url)
    catalog = root / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(data, sort_keys=False))
    with Deployment(root, SITE, admin_service(TOKEN), catalog=catalog) as d:
        yield d


def pod_processes(hub):
    """Process ids of what the kubelet runs for pods now (sandbox, sidecar, server, kernels)."""
    pids = set()
    for running in hub.cluster.kubelet.runner.pods.values():
        for proc in [running.pause, *running.processes.values()]:
            top = psutil.Process(proc.pid)
            pids |= {top.pid, *(child.pid for child in top.children(recursive=True))}
    return pids


def stop_and_wait(hub, page):
    page.goto(f"{hub.url}/hub/home")
    page.locator("#stop").click()
    deadline = time.monotonic() + 90
    while (hub.api.objects("pods", "oggmhub") or hub.cluster.kubelet.runner.pods) and time.monotonic() < deadline:
        time.sleep(0.5)


def admin_password(hub):
    """The first admin's password, printed once in the hub pod's log."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"password: (\S+)", hub.hub_log())
        if found:
            return found.group(1)
        requests.get(f"{hub.url}/hub/login", timeout=30)
        time.sleep(1)
    raise AssertionError("the hub printed no admin password")


def test_sign_up_pick_oggm_run_a_cell_stop_and_nothing_is_left(hub):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{hub.url}/hub/login")
        environments = page.locator(".oggmhub-environment h3").all_inner_texts()
        assert [e.split(" GPU")[0].strip() for e in environments] == ["OGGM", "3D Slicer", "Fiji"]
        screenshot(page, "deployment-welcome")

        sign_up(page, hub, "ada", PASSWORD)

        admin = browser.new_page()
        login(admin, hub, "admin", admin_password(hub))
        admin.goto(f"{hub.url}/hub/authorize/ada")
        admin.close()

        login(page, hub, "ada", PASSWORD)
        start_from_picker(page, hub, "oggm", "small")  # kubespawner's picker, from the catalog
        screenshot(page, "deployment-jupyterlab")
        new_notebook(page, hub)
        out = run_cell(page, "import os, socket\nprint('uid', os.getuid(), os.environ['OGGMHUB_ENVIRONMENT'])")
        assert any("uid 1000 oggm" in text for text in out), out
        screenshot(page, "deployment-notebook")
        [pod] = hub.api.objects("pods", "oggmhub")
        pids = pod_processes(hub)
        assert len(pids) >= 4 and pod["status"]["podIP"].startswith(hub.network.prefix)
        stop_and_wait(hub, page)

        # a DOI launch link: the launch page, Start, JupyterLab at the dataset's files (the
        # sidecar's read-only mount, linked at ~/datasets/oggm-mirror by the postStart hook)
        page.goto(f"{hub.url}/hub/launch?dataset=https://doi.org/{OGGM_DOI}")
        assert page.locator("#launch-dataset").inner_text() == "OGGM data server"
        page.locator("#launch-start-button").click()
        page.wait_for_url(re.compile(r".*/user/ada/lab/tree/datasets/oggm-mirror.*"), timeout=600_000)
        page.locator(".jp-DirListing-content").get_by_text("MIRROR.txt").wait_for(timeout=120_000)
        screenshot(page, "deployment-launch-doi")
        pids |= pod_processes(hub)
        stop_and_wait(hub, page)
    assert hub.api.objects("pods", "oggmhub") == [] and hub.cluster.kubelet.runner.pods == {}
    left = [p.info["cmdline"] for p in psutil.process_iter(["pid", "cmdline"]) if p.info["pid"] in pids]
    assert left == [], left
