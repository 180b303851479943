"""The desktop in the browser, end to end: a Fiji server in the local hub, its
``/user/<name>/desktop/`` opened in Chromium from JupyterLab's launcher (noVNC → jupyter-remote-desktop-proxy →
TigerVNC → an Xfce session), and Fiji's GUI started from that desktop with the keyboard.

Real components throughout, except Fiji itself: Debian's ImageJ stands in for the Fiji
download this machine cannot reach (tests/fiji_stand_in.py). Screenshots go to
artifacts/. Needs Debian's tigervnc-standalone-server, xfce4, dbus-x11 and imagej
(.ci/run installs them; the Fiji environment's apt.txt names them).
"""

from __future__ import annotations

import os
import re

import pytest

from oggmhub.backends.local.spawner import SESSION_MARKER
from support import fiji_stand_in
from support.browser import chromium, login, screenshot
from support.desktop_probe import canvas_colours, desktop_server, marked, window_names
from support.local_hub import running_hub, wait_until

PASSWORD = "stack-of-slices-42"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    images = fiji_stand_in.make_images_dir(tmp_path_factory.mktemp("images"))
    with running_hub(tmp_path_factory.mktemp("hub") / "data", images_dir=images) as hub:
        yield hub


@pytest.fixture(scope="module")
def fiji_server(hub):
    """grace's Fiji server, started through the REST API (the picker has its own test)."""
    session = hub.new_user("grace", PASSWORD)
    r = hub.api(session, "POST", "/users/grace/server", json={"profile": "fiji", "size": "small"})
    assert r.status_code in (201, 202), r.text
    hub.wait_for_server(session, "grace")
    return session


def test_desktop_in_the_browser_shows_xfce_and_starts_fiji(hub, fiji_server):
    home = os.path.join(hub.data_dir, "homes", "grace")
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        login(page, hub, "grace", PASSWORD)

        # JupyterLab's launcher has a Desktop tile; it opens the desktop in a new tab
        lab = page
        lab.goto(f"{hub.url}/user/grace/lab")
        tile = lab.locator(".jp-LauncherCard", has_text="Desktop")
        tile.wait_for(timeout=120_000)
        screenshot(lab, "desktop-launcher-tile")
        with lab.context.expect_page() as opened:
            tile.click()
        page = opened.value
        page.wait_for_load_state()
        assert page.url.rstrip("/").endswith("/user/grace/desktop"), page.url
        page.set_viewport_size({"width": 1280, "height": 900})
        try:
            page.locator("#status", has_text="Connected").wait_for(timeout=90_000)
            # the session draws its desktop (wallpaper, panel) into the framebuffer
            wait_until(lambda: canvas_colours(page) > 20, 90, "the desktop was never drawn")
        finally:
            screenshot(page, "desktop-connected")

        vnc = desktop_server(home)
        assert vnc, "no TigerVNC server runs with grace's X authority"
        display = next(a for a in vnc.cmdline()[1:] if re.fullmatch(r":\d+", a))
        session = vnc.environ()[SESSION_MARKER]
        wait_until(lambda: "xfce4-panel" in window_names(display, home), 60,
                   "Xfce's panel never appeared on the desktop")

        # Start Fiji from the desktop the way a user would, with keys typed into the noVNC
        # canvas: Alt+F3 opens Xfce's application finder, which lists the environment's
        # menu entries (TigerVNC drops XDG_DATA_DIRS; oggmhub's xstartup puts it back).
        page.locator("#screen canvas").click(position={"x": 640, "y": 400})

        def finder_open():
            # pressed again until it opens: the session's shortcuts come up a little after its panel
            if "Application Finder" not in window_names(display, home):
                page.keyboard.press("Alt+F3")
                page.wait_for_timeout(2000)
            return "Application Finder" in window_names(display, home)

        wait_until(finder_open, 40, "Alt+F3 did not open Xfce's application finder")
        page.wait_for_timeout(500)
        page.keyboard.type("Fiji")
        page.wait_for_timeout(1500)
        screenshot(page, "desktop-find-fiji")
        page.keyboard.press("Enter")
        wait_until(lambda: any(n.startswith("ImageJ") for n in window_names(display, home)), 120,
                   "Fiji's window (ImageJ, standing in) never appeared on the desktop")
        page.wait_for_timeout(2000)
        screenshot(page, "desktop-fiji")

    # stopping the server ends the whole desktop, daemons that left its process tree included
    r = hub.api(fiji_server, "DELETE", "/users/grace/server")
    assert r.status_code in (202, 204), r.text
    wait_until(lambda: not hub.api(fiji_server, "GET", "/users/grace").json()["servers"], 60,
               "grace's server did not stop")
    assert marked(session) == [], "these processes of grace's desktop outlived her server"
