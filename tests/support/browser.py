"""A real browser for tests: Debian's Chromium driven by Playwright (see TESTING.md)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil

from support import paths as _paths

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
ARTIFACTS = os.environ.get(
    "OGGMHUB_TEST_ARTIFACTS",
    os.path.join(str(_paths.REPO), "artifacts"),
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


def run_cell(page, code):
    """Type code into the active notebook's last cell, run it, return the output text."""
    cells = page.locator(".jp-Notebook .jp-Cell")
    cell = cells.nth(cells.count() - 1)  # fixed now: running it appends a new last cell
    cell.locator(".cm-content").click()
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")
    output = cell.locator(".jp-OutputArea-output")
    try:
        output.first.wait_for(timeout=180_000)
    except Exception:
        screenshot(page, "run-cell-failed")
        raise
    return output.all_inner_texts()


def start_from_picker(page, hub, env, size):
    """As ada: pick ``env`` at ``size`` on the spawn page and wait for JupyterLab."""
    page.goto(f"{hub.url}/hub/spawn")
    page.locator(f"#profile-item-{env}").check()
    page.select_option(f"#profile-option-{env}--size", size)
    screenshot(page, f"picker-{env}")
    page.get_by_role("button", name="Start").click()
    page.wait_for_url(re.compile(r".*/user/ada/lab.*"), timeout=900_000)
    page.locator(".jp-Launcher, .jp-NotebookPanel").first.wait_for(timeout=120_000)


def new_notebook(page, hub):
    """As ada: a new notebook from a fresh launcher, its kernel idle."""
    page.goto(f"{hub.url}/user/ada/lab?reset")  # a fresh workspace shows the launcher
    page.locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
    page.locator(".jp-Notebook .jp-Cell .cm-content").first.wait_for(timeout=60_000)
    # wait for the kernel to be ready before typing
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=120_000)


def stop_and_open_picker(page, hub, tries=60):
    """Stop the server from the hub's home page, as a user does, and open the picker once
    the stop is done (the home page hides its Stop button then)."""
    page.goto(f"{hub.url}/hub/home")
    page.locator("#stop").click()
    page.locator("#stop").wait_for(state="hidden", timeout=120_000)
    for _ in range(tries):  # "Your server is stopping" until the hub has seen it stop
        page.goto(f"{hub.url}/hub/spawn")
        if page.locator("#profile-item-oggm").count():
            return
        page.wait_for_timeout(1000)
    raise AssertionError(f"the picker did not come back within {tries} s of stopping: {page.url}")


def sign_up(page, hub, username, password):
    """Sign up on the hub's form, as a newcomer does, until it says the admin was asked."""
    page.goto(f"{hub.url}/hub/signup")
    page.fill("#username_input", username)
    page.fill("#password_input", password)
    page.fill("#password_confirmation_input", password)
    page.locator("#signup_submit").click()
    page.get_by_text("Your information has been sent to the admin").wait_for()
