"""The picker's datasets, in Chromium: a dataset the chosen environment mounts by default
shows as included (checked, fixed), not as an extra; no admin instructions for users."""

import pytest

from oggmhub.catalog import load_catalog
from oggmhub.choice import profile_list
from oggmhub.picker import render_picker
from support.browser import chromium
from support.paths import CATALOG


def picker_html():
    catalog = load_catalog(str(CATALOG))
    included = {name: [(e.name, e.display_name) for e in catalog.environments.values() if name in e.datasets]
                for name in catalog.datasets}
    return render_picker(profile_list(catalog), {}, list(catalog.datasets.values()), included)


def test_no_admin_text_for_users():
    html = picker_html()
    assert "oggmhub datasets mirror" not in html and "`" not in html.split("<script>")[0]


@pytest.mark.browser
def test_an_environments_own_dataset_shows_as_included_not_offered_again():
    with chromium() as browser:
        page = browser.new_page()
        page.set_content(f"<form>{picker_html()}</form>")
        row = page.locator(".oggmhub-dataset", has=page.locator("input[value=oggm-mirror]"))
        box = row.locator("input")
        page.locator("input[name=profile][value=oggm]").check()
        assert box.is_checked() and box.is_disabled()
        assert row.locator(".oggmhub-included").is_visible()
        assert "included with OGGM" in row.inner_text()
        # Fiji does not mount it: there it is an extra the user may add
        page.locator("input[name=profile][value=fiji]").check()
        assert not box.is_checked() and not box.is_disabled()
        assert not row.locator(".oggmhub-included").is_visible()
        box.check()
        page.locator("input[name=profile][value=oggm]").check()
        page.locator("input[name=profile][value=fiji]").check()
        assert box.is_checked()  # the user's own choice comes back
