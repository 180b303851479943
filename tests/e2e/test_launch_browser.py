"""Launch links in a real browser (Chromium) against a real local hub with the OGGM
environment: log in from a DOI link, confirm, land in JupyterLab on the dataset's files;
the same link opens at once; a dataset of another environment asks before restarting;
the datasets page's badge link works and its bookmarklet finds a page's DOI."""

from __future__ import annotations

import os
import re

import pytest

from support.browser import chromium, screenshot
from support.launch_fixtures import CELLS_DOI, OGGM_DOI, launch_catalog
from support.local_hub import REPO, materials_repo, running_hub

pytestmark = pytest.mark.browser
PASSWORD = "moraine-2026-x"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    folder = tmp_path_factory.mktemp("launch-browser")
    catalog = launch_catalog(folder / "config")
    with running_hub(folder / "data", catalog=catalog, images_dir=os.path.join(REPO, "images"),
                     env={"OGGMHUB_COHORT_CHECK_INTERVAL": "0"}) as hub:
        yield hub


def server(hub, name):
    return hub.api(hub.admin(), "GET", f"/users/{name}").json()["servers"].get("")


def test_a_doi_link_logs_in_starts_and_opens_the_datasets_files(hub, tmp_path):
    materials = materials_repo(tmp_path)
    hub.signup("lena", PASSWORD)
    hub.approve("lena")
    hub.salem_stand_in("lena")
    link = f"{hub.url}/hub/launch?dataset=https://doi.org/{OGGM_DOI}"
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(link)
        assert page.locator("#launch-dataset").inner_text() == "OGGM data server"
        page.locator("#launch-login-button").click()
        page.fill("#username_input", "lena")
        page.fill("#password_input", PASSWORD)
        page.locator("#login_submit").click()
        # back on the launch page, nothing started yet: the user confirms
        page.locator("#launch-start-button").wait_for()
        assert "/hub/launch?dataset=" in page.url and server(hub, "lena") is None
        page.locator("#launch-start-button").click()
        page.wait_for_url(re.compile(r".*/user/lena/lab/tree/datasets/oggm-mirror.*"), timeout=900_000)
        listing = page.locator(".jp-DirListing-content")
        listing.get_by_text("README.txt").wait_for(timeout=120_000)
        assert listing.get_by_text("rgi").count() == 1
        screenshot(page, "launch-lab-at-dataset")
        assert server(hub, "lena")["user_options"]["profile"] == "oggm"
        started = server(hub, "lena")["started"]

        # the same link again opens at once (no page in between, no restart)
        response = page.goto(link)
        page.wait_for_url(re.compile(r".*/user/lena/lab/tree/datasets/oggm-mirror.*"))
        assert response.request.redirected_from is not None
        listing.get_by_text("README.txt").wait_for(timeout=120_000)
        # a file inside the dataset
        page.goto(f"{hub.url}/hub/launch?dataset=oggm-mirror&path=rgi")
        page.wait_for_url(re.compile(r".*/lab/tree/datasets/oggm-mirror/rgi$"))
        listing.get_by_text("outlines.csv").wait_for(timeout=60_000)
        page.goto(f"{hub.url}/hub/launch?dataset=oggm-data&path=README.txt")
        page.wait_for_url(re.compile(r".*/lab/tree/datasets/oggm-mirror/README.txt$"))
        page.get_by_text("the OGGM mirror, for launch tests").first.wait_for(timeout=60_000)

        # a dataset only another environment mounts: asked, never restarted by the link
        page.goto(f"{hub.url}/hub/launch?dataset=doi:{CELLS_DOI}")
        page.locator("#launch-restart-button").wait_for()
        assert "OGGM" in page.locator("#launch-current").inner_text()
        assert "Fiji" in page.locator("#launch-restart").inner_text()
        screenshot(page, "launch-asks-before-restart")
        assert server(hub, "lena")["started"] == started and server(hub, "lena")["ready"]

        # the datasets page: every catalog dataset, and a badge link that works
        page.goto(f"{hub.url}/hub/datasets")
        assert page.locator(".oggmhub-dataset").count() == 4  # the shipped OGGM, IDC and IDR entries, and cell-images
        assert page.locator("#dataset-cell-images .dataset-environments").inner_text() == "Fiji"
        markdown = page.locator('#dataset-oggm-mirror .dataset-snippet[data-kind="markdown"]').input_value()
        badge, target = re.fullmatch(r"\[!\[[^\]]+\]\(([^)]+)\)\]\(([^)]+)\)", markdown).groups()
        assert target == f"{hub.url}/hub/launch?dataset={OGGM_DOI}"
        page.locator("#dataset-oggm-mirror summary").click()
        image = page.locator("#dataset-oggm-mirror details img")
        image.wait_for()
        assert image.get_attribute("src") == badge
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        screenshot(page, "launch-datasets-page")
        page.goto(target)
        page.wait_for_url(re.compile(r".*/user/lena/lab/tree/datasets/oggm-mirror.*"))

        # the bookmarklet, on a publisher's page with a citation_doi meta tag and on plain text
        bookmarklet = page.goto(f"{hub.url}/hub/datasets") and \
            page.locator("#datasets-bookmarklet").get_attribute("href")
        assert bookmarklet.startswith("javascript:")
        paper = browser.new_page()
        for html, doi in ((f'<html><head><meta name="citation_doi" content="{OGGM_DOI}"></head><body>A paper</body></html>', OGGM_DOI),
                          (f"<html><body><p>Data: https://doi.org/{CELLS_DOI}.</p></body></html>", CELLS_DOI)):
            paper.set_content(html)
            paper.evaluate("() => { window.__opened = []; window.open = u => { window.__opened.push(u); }; }")
            paper.evaluate(bookmarklet[len("javascript:"):])
            assert paper.evaluate("window.__opened") == [f"{hub.url}/hub/launch?dataset={doi.replace('/', '%2F')}"]
        page.goto(f"{hub.url}/hub/launch?dataset={CELLS_DOI.replace('/', '%2F')}")
        page.locator("#launch-restart-button").wait_for()

        # materials pulled with nbgitpuller, then the notebook opens
        page.goto(f"{hub.url}/hub/launch?dataset=oggm-mirror&repo={materials}"
                  "&urlpath=lab/tree/tutorials.git/01-glacier-flowline.ipynb")  # nbgitpuller clones into tutorials.git
        page.wait_for_url(re.compile(r".*/user/lena/lab/tree/tutorials.git/01-glacier-flowline.ipynb"), timeout=120_000)
        assert os.path.exists(os.path.join(hub.data_dir, "homes", "lena", "tutorials.git", "01-glacier-flowline.ipynb"))
        assert server(hub, "lena")["started"] == started

        # another size: asked, then restarted on the user's click, and opened at the file
        page.goto(f"{hub.url}/hub/launch?dataset=oggm-mirror&size=medium&path=README.txt")
        page.locator("#launch-restart-button").wait_for()
        assert "Medium" in page.locator("#launch-restart").inner_text()
        assert server(hub, "lena")["started"] == started
        page.locator("#launch-restart-button").click()
        page.wait_for_url(re.compile(r".*/user/lena/lab/tree/datasets/oggm-mirror/README.txt$"), timeout=600_000)
        page.get_by_text("the OGGM mirror, for launch tests").first.wait_for(timeout=120_000)
        restarted = server(hub, "lena")
        assert restarted["started"] != started and restarted["user_options"]["size"] == "medium"


def test_signing_up_with_a_join_code_comes_back_to_the_launch(hub):
    import subprocess
    import sys
    from datetime import timedelta

    from oggmhub.cohorts.model import now_utc

    token = hub.api(hub.admin(), "POST", "/users/admin/tokens", json={"note": "launch"}).json()["token"]
    now = now_utc()
    out = subprocess.run(
        [sys.executable, "-m", "oggmhub", "cohort", "create", "glacier-school", "--env", "oggm",
         "--start", (now - timedelta(hours=1)).isoformat(), "--end", (now + timedelta(days=1)).isoformat(),
         "--hub", hub.url, "--token", token], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    code = out.stdout.split("join code: ")[1].split()[0]
    link = f"{hub.url}/hub/launch?dataset=doi:{OGGM_DOI}&path=rgi"
    with chromium() as browser:
        page = browser.new_page()
        page.goto(link)
        page.locator("#launch-signup-button").click()
        page.fill("#username_input", "nils")
        page.fill("#password_input", PASSWORD)
        page.fill("#password_confirmation_input", PASSWORD)
        page.fill("#join_code_input", code)
        page.locator("#signup_submit").click()
        page.get_by_text("Welcome to cohort glacier-school").wait_for()
        page.locator("#signup-continue").click()
        page.fill("#username_input", "nils")
        page.fill("#password_input", PASSWORD)
        page.locator("#login_submit").click()
        page.locator("#launch-start-button").wait_for()
        assert page.url == f"{hub.url}/hub/launch?dataset=doi:{OGGM_DOI}&path=rgi" or "path=rgi" in page.url
        assert "Opens <code>rgi</code>" in page.content()
    assert server(hub, "nils") is None
