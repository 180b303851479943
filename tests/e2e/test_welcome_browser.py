"""The welcome page and the tutorials in the home, in Chromium against a real local hub.

* ``/`` (the login page) lists the catalog's environments and datasets, with licence,
  citation and DOI, and how to get an account; looked at at desktop and phone widths
  (screenshots in artifacts/welcome-*.png).
* After sign-up and a first OGGM start, the home holds the OGGM tutorials in
  ~/tutorials/oggm/ and JupyterLab opens on them; a tutorial the user edited survives the
  next start.
"""

import json
import os
import re

import pytest

from oggmhub.catalog import load_catalog
from support.browser import chromium, screenshot, stop_and_open_picker
from support.local_hub import running_hub
from support.paths import CATALOG

PASSWORD = "firn-line-2026-ok"
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("welcome") / "data") as hub:
        yield hub


def test_the_welcome_page_lists_the_catalogs_environments_and_datasets(hub):
    catalog = load_catalog(str(CATALOG))
    with chromium() as browser:
        for name, viewport in (("desktop", {"width": 1280, "height": 900}), ("phone", {"width": 390, "height": 844})):
            page = browser.new_page(viewport=viewport)
            page.goto(f"{hub.url}/")
            assert page.title() == "OGGM Hub"
            welcome = page.locator("#oggmhub-welcome")
            for env in catalog.environments.values():
                item = welcome.locator(f'[data-environment="{env.name}"]')
                assert item.locator("h3").inner_text().startswith(env.display_name)
                assert " ".join(env.description.split()) in " ".join(item.inner_text().split())
            for d in catalog.datasets.values():
                item = welcome.locator(f'[data-dataset="{d.name}"]')
                assert item.locator("h3").inner_text() == d.title
                assert item.locator(".oggmhub-licence").inner_text() == d.licence
                assert " ".join(item.locator(".oggmhub-citation").inner_text().split()) == " ".join(d.citation.split())
                assert item.locator(".oggmhub-doi").get_attribute("href") == f"https://doi.org/{d.doi}"
            help_text = page.locator("#oggmhub-account-help").inner_text()
            assert "Sign up" in help_text and "join code" in help_text
            assert page.locator("#oggmhub-account-help a", has_text="Sign up").get_attribute("href").endswith("/hub/signup")
            assert page.locator("#login_submit").is_visible()  # signing in is still right there
            assert page.locator(".oggmhub-links a").count() >= 1
            # nothing wider than the screen (no sideways scrolling on a phone)
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
            screenshot(page, f"welcome-{name}")
            page.close()


def wait_for_lab(page, hub, user):
    page.wait_for_url(re.compile(rf".*/user/{user}/lab.*"), timeout=900_000)
    page.locator(".jp-DirListing-content").first.wait_for(timeout=120_000)


def test_first_oggm_start_brings_the_tutorials_and_an_edit_survives_the_next(hub):
    user = "nora"
    home = os.path.join(hub.data_dir, "homes", user)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{hub.url}/")
        page.locator("#oggmhub-account-help a", has_text="Sign up").click()
        page.fill("#username_input", user)
        page.fill("#password_input", PASSWORD)
        page.fill("#password_confirmation_input", PASSWORD)
        page.locator("#signup_submit").click()
        page.get_by_text("Your information has been sent to the admin").wait_for()
        hub.approve(user)
        page.goto(f"{hub.url}/hub/login")
        page.fill("#username_input", user)
        page.fill("#password_input", PASSWORD)
        page.locator("#login_submit").click()
        page.wait_for_url(re.compile(r".*/hub/spawn.*"))
        hub.salem_stand_in(user)
        page.locator("#profile-item-oggm").check()
        # OGGM's own data is included, not offered again as an extra
        mirror = page.locator("#oggmhub-datasets input[value=oggm-mirror]")
        assert mirror.is_checked() and mirror.is_disabled()
        page.get_by_role("button", name="Start").click()
        wait_for_lab(page, hub, user)
        # JupyterLab opens on the environment's tutorials
        assert "/lab/tree/tutorials/oggm" in page.url, page.url
        listing = page.locator(".jp-DirListing-content")
        listing.get_by_text("oggm-getting-started.ipynb").wait_for(timeout=60_000)
        listing.get_by_text("oggm-dask.ipynb").wait_for()
        screenshot(page, "tutorials-first-start")
        assert sorted(n for n in os.listdir(os.path.join(home, "tutorials", "oggm")) if not n.startswith(".")) == [
            "oggm-dask.ipynb", "oggm-getting-started.ipynb"]

        # the user edits a tutorial (through the server's contents API, as JupyterLab saves)
        path = "tutorials/oggm/oggm-getting-started.ipynb"
        xsrf = next(c["value"] for c in page.context.cookies() if c["name"] == "_xsrf")
        api = f"{hub.url}/user/{user}/api/contents/{path}"
        model = page.request.get(api).json()
        model["content"]["cells"].insert(0, {"cell_type": "markdown", "metadata": {}, "source": "My notes on HEF"})
        r = page.request.put(api, data=json.dumps({"type": "notebook", "format": "json", "content": model["content"]}),
                             headers={"X-XSRFToken": xsrf, "Content-Type": "application/json"})
        assert r.ok, r.text()

        # stop, start again: the edit is still there
        stop_and_open_picker(page, hub)
        page.get_by_role("button", name="Start").click()
        wait_for_lab(page, hub, user)
        again = page.request.get(api).json()
        assert again["content"]["cells"][0]["source"] == "My notes on HEF"
        screenshot(page, "tutorials-second-start")
