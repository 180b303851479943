"""A real browser for tests: Debian's Chromium driven by Playwright (see TESTING.md)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
ARTIFACTS = os.environ.get(
    "OGGMHUB_TEST_ARTIFACTS",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "artifacts"),
)


@contextlib.contextmanager
def chromium():
    """A fresh browser (an empty profile per call); yields Playwright's Browser."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"Chromium is not installed at {CHROMIUM}: apt-get install -y chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page, name):
    """Save a screenshot under artifacts/ (kept by CI as a test artifact); its path."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, f"{name}.png")
    page.screenshot(path=path, full_page=True)
    return path


def login(page, hub, username, password):
    """Log in on the hub's login page; wait until the hub has taken the user in."""
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", username)
    page.fill("#password_input", password)
    page.locator("#login_submit").click()
    page.wait_for_url(re.compile(r".*/(hub/(spawn|home)|user/).*"))
