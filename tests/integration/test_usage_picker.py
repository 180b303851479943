"""The picker's side of usage (a LocalEnvSpawner outside a hub): a user with two projects
gets a project choice in the form, which the form and the REST body carry into the stored
options; a project that is not theirs is a 400; a used-up budget refuses the choice before
anything starts, unless c.Usage.enabled is False."""

import asyncio
import time

import pytest
import yaml
from traitlets.config import Config

from oggmhub.choice import ChoiceError
from oggmhub.usage.budgets import BudgetExceeded
from oggmhub.usage.store import UsageStore
from support.paths import CATALOG


@pytest.fixture
def catalog(tmp_path):
    data = yaml.safe_load(CATALOG.read_text())
    data["projects"] = {"era5-grant": {"members": ["ada"]}, "ice-grant": {"members": ["ada", "bo"]}}
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def config(catalog, **usage):
    c = Config()
    c.Catalog.path = str(catalog)
    for k, v in usage.items():
        setattr(c.Usage, k, v)
    return c


def test_a_user_with_two_projects_chooses_one(local_spawner, catalog):
    spawner = local_spawner("ada", config=config(catalog))
    form = spawner._render_picker()
    assert 'id="oggmhub-project"' in form and 'value="era5-grant"' in form and 'value="ice-grant"' in form
    options = spawner._catalog_options_from_form({"profile": ["oggm"], "profile-option-oggm--size": ["small"],
                                                  "project": ["ice-grant"]})
    assert options["project"] == "ice-grant"
    asyncio.run(spawner._run_apply_user_options({"profile": "oggm", "project": "ice-grant"}))
    assert spawner.user_options["project"] == "ice-grant" and spawner.user_options["profile"] == "oggm"
    bo = local_spawner("bo", config=config(catalog))
    assert 'id="oggmhub-project"' not in bo._render_picker()  # one project: nothing to choose
    with pytest.raises(ChoiceError) as e:
        asyncio.run(bo._run_apply_user_options({"profile": "oggm", "project": "era5-grant"}))
    assert e.value.status_code == 400
    assert str(e.value) == "you do not belong to project 'era5-grant'; your projects: ice-grant"


@pytest.mark.parametrize("enabled", [True, False])
def test_a_used_up_budget_refuses_the_choice_unless_accounting_is_off(local_spawner, catalog, tmp_path, enabled):
    data = yaml.safe_load(catalog.read_text())
    data["budgets"] = {"bo-day": {"user": "bo", "unit": "gib-hours", "amount": 1, "window": "day"}}
    catalog.write_text(yaml.safe_dump(data, sort_keys=False))
    spawner = local_spawner("bo", config=config(catalog, enabled=enabled))
    store = UsageStore(str(tmp_path / "data" / "usage.sqlite"))  # the spawner's data dir's
    now = time.time()
    start = max(now - now % 86400, now - 1800)  # today (UTC), at most half an hour ago
    if now - start < 10:
        pytest.skip("within 10 s of midnight UTC: no time today to have used a day's budget")
    store.open({"id": "server:bo::x", "kind": "server", "user": "bo", "mem_limit": 1000 * 2 ** 30,
                "start": start, "stop": now})  # 1000 GiB for >= 10 s: over 2.7 GiB-hours today
    if enabled:
        with pytest.raises(BudgetExceeded) as e:
            asyncio.run(spawner._run_apply_user_options({"profile": "oggm"}))
        assert e.value.status_code == 403 and str(e.value).startswith("Budget 'bo-day' (1 GiB-hours per day for user bo)")
        assert spawner.choice is None  # nothing applied
    else:
        asyncio.run(spawner._run_apply_user_options({"profile": "oggm"}))
        assert spawner.choice is not None
