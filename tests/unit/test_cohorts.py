"""Cohorts without a hub: the model's validation, join codes, CSV, member policy, choices
narrowed to a cohort, materials commands, pre-puller values (against the chart's schema)."""

import copy
import subprocess
from datetime import timedelta

import jsonschema
import pytest
import yaml

from oggmhub.catalog import CatalogError, load_catalog
from oggmhub.choice import ChoiceError, profile_list, resolve_choice
from oggmhub.cohorts import joincodes, materials
from oggmhub.cohorts import store as cohort_store
from oggmhub.cohorts.cli import prepuller_images
from oggmhub.cohorts.model import (
    Cohort,
    CohortError,
    JoinError,
    member_policy,
    now_utc,
)
from oggmhub.cohorts.validation import parse_members_csv, validate_spec
from support.paths import SHARED

NOW = now_utc()
GOOD = {
    "name": "glaciers-2026", "start": (NOW - timedelta(hours=1)).isoformat(),
    "end": (NOW + timedelta(days=5)).isoformat(), "environments": ["oggm=small,medium"],
}


def cohort(**changes):
    return validate_spec({**GOOD, **changes}, load_catalog_cached())


_CATALOG = {}


def load_catalog_cached():
    from support.paths import CATALOG

    if "c" not in _CATALOG:
        _CATALOG["c"] = load_catalog(str(CATALOG))
    return _CATALOG["c"]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"environments": ["matlab"]}, "environments: unknown environment 'matlab'; choose from: oggm, slicer, fiji"),
        ({"environments": ["oggm=huge"]}, "environments.oggm: size 'huge' is not offered for OGGM; choose from: small, medium, large"),
        ({"environments": []}, "environments: give at least one; choose from: oggm, slicer, fiji"),
        ({"start": "2026-06-05T08:00Z", "end": "2026-06-01T08:00Z"}, "end: the window ends (2026-06-01 08:00 UTC) before it starts (2026-06-05 08:00 UTC)"),
        ({"start": "2020-01-01", "end": "2020-02-01"}, "end: the window ended already (2020-02-01 00:00 UTC)"),
        ({"start": "next monday"}, "start: 'next monday' is not an ISO-8601 time"),
        ({"name": "Glaciers 2026"}, "name: 'Glaciers 2026' is not a valid cohort name"),
        ({"limits": {"gpus": 99}}, "limits.gpus: 99 is out of range; allowed: 0 to 16"),
        ({"limits": {"cpus": 2}}, "limits.cpus: unknown limit; allowed: servers, dask_workers, gpus"),
        ({"materials": {"repo": "not a url"}}, "materials.repo: 'not a url' is not a git repository URL"),
        ({"organisers": ["alice smith"]}, "organisers: 'alice smith' is not a valid username"),
        ({"colour": "blue"}, "colour: unknown field"),
    ],
)
def test_bad_cohorts_are_refused_with_the_field_and_what_is_allowed(changes, message):
    with pytest.raises(CohortError) as info:
        cohort(**changes)
    assert any(message in p for p in info.value.problems), info.value.problems


def test_every_problem_is_reported_at_once_and_a_duplicate_name_is_one():
    with pytest.raises(CohortError) as info:
        validate_spec({**GOOD, "environments": ["matlab"], "end": GOOD["start"]}, load_catalog_cached(),
                      existing=["glaciers-2026"])
    problems = info.value.problems
    assert len(problems) == 3, problems
    assert problems[0] == "name: a cohort named 'glaciers-2026' already exists; choose another name"


def test_a_good_cohort_round_trips_through_group_properties():
    c = cohort(environments={"oggm": ["medium", "small"], "fiji": None}, organisers=["Alice"],
               materials="https://github.com/OGGM/tutorials.git", max_members="30")
    assert c.environments == {"oggm": ("small", "medium"), "fiji": None}  # catalog order
    assert c.organisers == ("alice",) and c.max_members == 30
    assert c.materials.dir == "tutorials" and c.materials.branch == "main"
    props = c.to_properties()
    assert "join_code" not in str(props).replace("join_code_hash", "")
    assert Cohort.from_properties(props) == c


def test_join_codes_are_hashed_and_forgiving_to_type():
    code = joincodes.new_code()
    assert len(code) == 14 and code.count("-") == 2
    hashed = joincodes.hash_code(code)
    assert code.replace("-", "") not in hashed
    assert joincodes.verify(code.lower().replace("-", " "), hashed)
    assert not joincodes.verify("AAAA-BBBB-CCCC", hashed)
    assert not joincodes.verify("", hashed)
    assert joincodes.hash_code(code) != hashed  # salted


def test_a_join_code_is_refused_when_wrong_expired_early_closed_or_full(hub_db):
    """As the hub checks a code (store.find_by_join_code, what POST /hub/api/cohorts/join calls)."""
    c, code = cohort_store.create(hub_db, cohort(max_members=2), join_code=True, by="admin")
    assert cohort_store.find_by_join_code(hub_db, code)[1].name == c.name
    with pytest.raises(JoinError, match="the join code is not valid"):
        cohort_store.find_by_join_code(hub_db, "WRONG-CODE-0000")
    with pytest.raises(JoinError, match="has expired: cohort 'glaciers-2026' ended on"):
        cohort_store.find_by_join_code(hub_db, code, now=c.end + timedelta(seconds=1))
    with pytest.raises(JoinError, match="is not valid yet: cohort 'glaciers-2026' opens on"):
        cohort_store.find_by_join_code(hub_db, code, now=c.start - timedelta(days=1))
    for name in ("ann", "bob"):
        cohort_store.join(hub_db, c.name, name)
    with pytest.raises(JoinError, match="is full \\(2 members\\)"):
        cohort_store.find_by_join_code(hub_db, code)
    cohort_store.close(hub_db, c.name)
    with pytest.raises(JoinError, match="has expired: cohort 'glaciers-2026' was closed"):
        cohort_store.find_by_join_code(hub_db, code)


@pytest.mark.parametrize(
    "text, message",
    [
        ("username,email\nalice,a@x\nbad name,b\n", "members.csv:3: 'bad name' is not a valid username"),
        ('alice\n"bob,x\n', "members.csv:2: not valid CSV: unexpected end of data"),  # where the quote opened
        ("alice\n,x\n", "members.csv:2: the first column (the username) is empty"),
        ("username\n", "members.csv: no usernames found"),
    ],
)
def test_malformed_csv_names_the_line(text, message):
    with pytest.raises(CohortError) as info:
        parse_members_csv(text)
    assert any(p.startswith(message) for p in info.value.problems), info.value.problems


def test_csv_header_blank_lines_case_and_repeats():
    assert parse_members_csv("Username,Email\n\nAlice,a@x\nbob\nalice\n") == ["alice", "bob"]


def test_member_policy_is_the_union_of_open_cohorts_and_names_the_window_when_none_is():
    a = cohort(environments=["oggm=small"], limits={"dask_workers": 2})
    b = cohort(name="fiji-class", environments=["oggm=medium", "fiji"], limits={"dask_workers": 8})
    policy = member_policy([a, b])
    assert policy.environments == {"oggm": ("small", "medium"), "fiji": None}
    assert policy.limits["dask_workers"] == 8 and policy.refusal is None
    assert policy.session_env()["OGGMHUB_MAX_DASK_WORKERS"] == "8"
    assert member_policy([]) is None
    late = member_policy([a], now=a.end + timedelta(hours=1))
    assert late.refusal.startswith("Your server can only start during your cohort's window: cohort "
                                   "'glaciers-2026' ended on")
    assert a.window_text() in late.refusal


def test_servers_stop_when_all_their_users_cohorts_have_ended_or_closed():
    from oggmhub.cohorts.window import servers_to_stop

    ended = cohort(name="ended").with_changes(start=NOW - timedelta(days=2), end=NOW - timedelta(hours=1))
    closed = cohort(name="closed").with_changes(closed_at=NOW - timedelta(minutes=5))
    running = cohort(name="running")
    upcoming = cohort(name="upcoming", start=(NOW + timedelta(days=1)).isoformat(), end=(NOW + timedelta(days=2)).isoformat())

    def group(c, *members):
        return {"name": c.group, "users": list(members), "properties": c.to_properties()}

    groups = [group(ended, "ana", "ben", "cy"), group(closed, "dee"), group(running, "ben"),
              group(upcoming, "cy"), {"name": "staff", "users": ["eve"], "properties": {}}]
    stop = servers_to_stop(groups, ["ana", "ben", "cy", "dee", "eve", "fay"], now=NOW)
    assert sorted(stop) == ["ana", "dee"]  # ben's other cohort runs, cy's opens later; eve and fay are in none
    assert stop["ana"].startswith("cohort 'ended' ended on") and ended.window_text() in stop["ana"]
    assert stop["dee"].startswith("cohort 'closed' was closed on")
    assert servers_to_stop(groups, [], now=NOW) == {}


def test_choices_narrowed_to_a_cohort(catalog):
    allowed = {"oggm": ("small", "medium")}
    assert resolve_choice(catalog, {}, allowed).user_options["size"] == "small"
    with pytest.raises(ChoiceError, match="size 'large' is not offered for OGGM; choose one of: small, medium"):
        resolve_choice(catalog, {"profile": "oggm", "size": "large"}, allowed)
    with pytest.raises(ChoiceError, match="unknown environment 'fiji'; choose one of: oggm"):
        resolve_choice(catalog, {"profile": "fiji"}, allowed)
    with pytest.raises(ChoiceError, match="GPU variant 't4' is not offered for 3D Slicer; choose one of: none"):
        resolve_choice(catalog, {"profile": "slicer", "gpu": "t4"}, {"slicer": None}, max_gpus=0)
    # a cohort without the catalog's default size gets its first allowed size
    assert resolve_choice(catalog, {}, {"oggm": ("large",)}).size.name == "large"
    [profile] = profile_list(catalog, allowed)
    assert list(profile["profile_options"]["size"]["choices"]) == ["small", "medium"]
    assert profile["default"] is True
    [slicer] = profile_list(catalog, {"slicer": None}, max_gpus=0)
    assert "gpu" not in slicer["profile_options"]


def test_materials_are_cloned_by_git_when_there_is_no_gitpuller(tmp_path):
    src = tmp_path / "src"
    subprocess.run(["git", "init", "-q", "-b", "main", str(src)], check=True)
    (src / "intro.ipynb").write_text("{}")
    git = ["git", "-C", str(src), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "materials"], check=True)
    home = tmp_path / "home"
    home.mkdir()
    item = cohort(materials=f"file://{src}").materials
    lines = []
    assert materials.pull(item, str(home), search_path=str(tmp_path / "nothing"), progress=lines.append)
    assert (home / "src" / "intro.ipynb").exists()
    broken = cohort(materials="file:///nonexistent/repo.git").materials
    assert not materials.pull(broken, str(home), search_path=str(tmp_path / "nothing"), progress=lines.append)
    assert "Could not pull the materials from file:///nonexistent/repo.git" in lines[-1]
    script = materials.shell_command(item, "/home/jovyan")
    assert "gitpuller" in script and script.endswith("true")


def test_prepuller_values_validate_against_the_chart_schema(catalog):
    z2jh = SHARED / "z2jh"
    schema = yaml.safe_load((z2jh / "values.schema.yaml").read_text())
    values = copy.deepcopy(yaml.safe_load((z2jh / "values.yaml").read_text()))
    extra = prepuller_images("glaciers-2026", {"oggm": ["small"], "fiji": None}, catalog)
    values["prePuller"].update(extra["prePuller"])
    jsonschema.Draft7Validator(schema).validate(values)
    images = extra["prePuller"]["extraImages"]
    assert images["cohort-glaciers-2026-oggm"] == {"name": catalog.environments["oggm"].image.name,
                                                  "tag": catalog.environments["oggm"].image.tag}
    assert all(len(k) <= 63 for k in images)


def test_catalog_cohorts_are_validated(tmp_path, catalog_path):
    data = yaml.safe_load(open(catalog_path))
    data["cohorts"] = {"summer": {"environments": ["oggm=huge", "matlab"], "start": "2026-06-05T00:00Z",
                                  "end": "2026-06-01T00:00Z", "limits": {"gpus": -1}}}
    bad = tmp_path / "catalog.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError) as info:
        load_catalog(str(bad))
    text = "\n".join(info.value.problems)
    assert "cohorts.summer.environments[0]: size 'huge' is not offered for oggm" in text
    assert "cohorts.summer.environments[1]: unknown environment 'matlab'" in text
    assert "cohorts.summer.end: the window ends" in text
    assert "cohorts.summer.limits.gpus" in text


def test_the_chart_values_enable_the_cohort_pages_on_kubernetes():
    from traitlets.config import Config

    from oggmhub import hub
    from oggmhub.cohorts.routes import TEMPLATES, handlers
    from support.paths import REPO

    values = yaml.safe_load((REPO / "helm-values" / "oggmhub.yaml").read_text())
    c = Config()
    exec(values["hub"]["extraConfig"]["oggmhub-cohorts"], {"c": c})  # as the chart's hub does
    assert [h for _, h in c.JupyterHub.extra_handlers if h.__module__.startswith("oggmhub.cohorts")] == [h for _, h in handlers()]
    assert c.JupyterHub.template_paths[0] == hub.TEMPLATES  # oggmhub's page.html over JupyterHub's
    assert TEMPLATES in c.JupyterHub.template_paths
    assert not c.Cohorts.get("catalog_path") and not c.get("Catalog")  # the one c.Catalog.path is in hub.config
    assert not c.Cohorts.get("homes_dir")  # PVC homes: no exports, no deletion by the hub
    # the service that stops members' servers when a window ends runs beside the hub there too
    service = next(s for s in c.JupyterHub.services if s["name"] == "cohort-window")
    assert service["command"][1:3] == ["-m", "oggmhub.cohorts.window"]
    assert any(r["services"] == ["cohort-window"] and "delete:servers" in r["scopes"] for r in c.JupyterHub.load_roles)
