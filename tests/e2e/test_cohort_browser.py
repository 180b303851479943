"""Cohorts end to end in Chromium: an admin creates a cohort on the Cohorts page; a student
signs up with its join code, sees only the cohort's environment and sizes, starts a server
and finds the materials in the home; the organiser pre-warms and watches the progress.
Screenshots go to artifacts/.
"""

import re
from datetime import timedelta

import pytest

from oggmhub.cohorts.model import now_utc
from support.browser import chromium, login, screenshot
from support.local_hub import materials_repo, running_hub

PASSWORD = "firn-density-2026"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("hub")) as hub:
        yield hub


@pytest.fixture(scope="module")
def materials(tmp_path_factory):
    return materials_repo(tmp_path_factory.mktemp("materials"))


def test_organiser_creates_a_cohort_a_student_joins_with_the_code_and_finds_the_materials(hub, materials):
    now = now_utc()
    with chromium() as browser:
        organiser = browser.new_page(viewport={"width": 1280, "height": 1000})
        login(organiser, hub, "admin", hub.admin_password)
        organiser.goto(f"{hub.url}/hub/home")
        organiser.locator("#oggmhub-cohorts-link").click()
        organiser.fill("#cohort-name", "summer-school")
        organiser.fill("#cohort-title", "Glacier modelling summer school")
        organiser.fill("#cohort-start", (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%MZ"))
        organiser.fill("#cohort-end", (now + timedelta(days=5)).strftime("%Y-%m-%dT%H:%MZ"))
        organiser.check("#env-oggm")
        organiser.check("#size-oggm-small")
        organiser.fill("#cohort-max-members", "30")
        organiser.fill("#cohort-materials", materials)
        screenshot(organiser, "cohort-create")
        organiser.locator("#create-cohort-submit").click()
        code = organiser.locator("#join-code").inner_text().strip()
        screenshot(organiser, "cohort-created")
        assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", code), code

        # the student signs up with the code from the link the organiser hands out
        student = browser.new_page(viewport={"width": 1280, "height": 900})
        student.goto(f"{hub.url}/hub/signup?join_code={code}")
        assert student.input_value("#join_code_input") == code
        student.fill("#username_input", "noor")
        student.fill("#password_input", PASSWORD)
        student.fill("#password_confirmation_input", PASSWORD)
        student.locator("#signup_submit").click()
        student.get_by_text("Welcome to cohort summer-school").wait_for()
        screenshot(student, "cohort-signup")
        # the code travelled in the link's query: JupyterHub's access log scrubs it
        assert "join_code=[secret]" in hub.log() and code not in hub.log()

        # no approval needed; only the cohort's environment and size are offered
        login(student, hub, "noor", PASSWORD)
        student.goto(f"{hub.url}/hub/spawn")
        student.locator("#profile-item-oggm").wait_for()
        assert student.locator("#profile-item-fiji").count() == 0
        assert student.locator("#profile-item-slicer").count() == 0
        sizes = student.locator("#profile-option-oggm--size option").evaluate_all("os => os.map(o => o.value)")
        assert sizes == ["small"]
        screenshot(student, "cohort-picker")
        student.get_by_role("button", name="Start").click()
        student.wait_for_url(re.compile(r".*/user/noor/lab.*"), timeout=600_000)
        folder = student.locator('.jp-DirListing-item[data-file-type="directory"]', has_text="tutorials")
        folder.wait_for(timeout=120_000)
        folder.dblclick()
        student.locator(".jp-DirListing-item", has_text="01-glacier-flowline.ipynb").wait_for(timeout=60_000)
        screenshot(student, "cohort-materials")

        # the organiser pre-warms: the running server counts as ready, progress is shown
        organiser.goto(f"{hub.url}/hub/cohorts/summer-school")
        assert organiser.locator('tr[data-member="noor"] .server-state').inner_text() == "ready"
        organiser.locator("#prewarm-submit").click()
        organiser.get_by_text("Pre-warm finished: 1 of 1 ready").wait_for(timeout=60_000)
        screenshot(organiser, "cohort-prewarm")
