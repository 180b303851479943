"""The local hub end to end in Chromium: sign up, approval, the picker, JupyterLab, a home
that survives a switch of environment (OGGM, then Fiji). Screenshots go to artifacts/.

The OGGM environment is built from images/oggm/ on first use (cached in
$OGGMHUB_ENV_CACHE, default ~/.cache/oggmhub/envs, so later runs reuse it).
"""

import pytest

from support import fiji_stand_in
from support.browser import (
    chromium,
    login,
    new_notebook,
    run_cell,
    screenshot,
    sign_up,
    start_from_picker,
    stop_and_open_picker,
)
from support.local_hub import running_hub

PASSWORD = "moraine-survey-2026"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    # OGGM from the repository; Fiji with Debian's ImageJ standing in for its download
    images = fiji_stand_in.make_images_dir(tmp_path_factory.mktemp("images") / "images", also=["oggm"])
    with running_hub(tmp_path_factory.mktemp("hub") / "data", images_dir=images) as hub:
        yield hub



def test_sign_up_approve_pick_oggm_and_keep_the_home_across_environments(hub):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        # sign up
        sign_up(page, hub, "ada", PASSWORD)
        screenshot(page, "signup")

        # not approved yet: login refused with the reason
        page.goto(f"{hub.url}/hub/login")
        page.fill("#username_input", "ada")
        page.fill("#password_input", PASSWORD)
        page.locator("#login_submit").click()
        page.get_by_text("has not been authorized by an administrator yet").wait_for()

        # the admin approves in their own browser session
        admin = browser.new_page()
        login(admin, hub, "admin", hub.admin_password)
        admin.goto(f"{hub.url}/hub/authorize")
        screenshot(admin, "authorize")
        admin.goto(f"{hub.url}/hub/authorize/ada")
        admin.close()

        # log in, pick OGGM, and run it
        login(page, hub, "ada", PASSWORD)
        hub.salem_stand_in("ada")
        start_from_picker(page, hub, "oggm", "small")
        screenshot(page, "jupyterlab-oggm")
        # the environment's JupyterLab asks about no news and checks for no updates
        notification = page.request.get(
            f"{hub.url}/user/ada/lab/api/settings/@jupyterlab/apputils-extension:notification").json()
        defaults = {k: v.get("default") for k, v in notification["schema"]["properties"].items()}
        assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False, defaults
        page.wait_for_timeout(2000)
        assert page.get_by_text("official Jupyter news").count() == 0
        # the launcher shows OGGM's tutorials (oggmhub's lab extension), titled by their
        # first heading; a card opens its notebook from ~/tutorials/oggm
        page.goto(f"{hub.url}/user/ada/lab?reset")
        cards = page.locator('.jp-LauncherCard[data-category="Tutorials"]')
        cards.filter(has_text="Getting started with OGGM").wait_for(timeout=60_000)
        assert cards.all_inner_texts() == ["Getting started with OGGM", "OGGM on Dask"]  # getting started first
        screenshot(page, "launcher-tutorials")
        cards.filter(has_text="OGGM on Dask").click()
        page.locator('.lm-TabBar-tab[title*="tutorials/oggm/oggm-dask.ipynb"]').first.wait_for(timeout=60_000)
        new_notebook(page, hub)
        out = run_cell(page, "import oggm, pathlib\n"
                             "print('OGGM', oggm.__version__)\n"
                             "pathlib.Path('glacier.txt').write_text(oggm.__version__)")
        screenshot(page, "notebook-oggm")
        assert any("OGGM 1.6.3" in text for text in out), out

        # stop, and start another environment: the file is still in the home
        stop_and_open_picker(page, hub)
        screenshot(page, "picker-again")
        # the last choice is pre-selected
        assert page.locator("#profile-item-oggm").is_checked()
        start_from_picker(page, hub, "fiji", "medium")
        new_notebook(page, hub)
        out = run_cell(page, "import os, importlib.util\n"
                             "print(open('glacier.txt').read(), os.environ['OGGMHUB_ENVIRONMENT'], os.environ['OGGMHUB_SIZE'],\n"
                             "      'oggm' if importlib.util.find_spec('oggm') else 'no-oggm')")
        screenshot(page, "notebook-after-switch")
        # the home came along; the software is Fiji's (no OGGM in it)
        assert any("1.6.3 fiji medium no-oggm" in text for text in out), out
