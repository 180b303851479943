"""Home quotas: where a user's quota comes from, how the catalog refuses absurd ones, the
warnings' levels, the rescue rule and the hub's free-space rule (pure logic, no disk)."""

import os
import subprocess
import sys

import pytest
import yaml

from oggmhub.catalog import load_catalog
from oggmhub.storage import space, usage
from oggmhub.storage.quotas import home_quota, human
from support.paths import CATALOG

GiB, MiB = 1024**3, 1024**2
STORAGE = {"home_quota": "10Gi", "cohorts": {"workshop": "2Gi", "thesis": "50G"}, "users": {"alice": 123456789}}


@pytest.mark.parametrize("user, cohorts, expected, source", [
    ("bob", [], 10 * GiB, "storage.home_quota"),
    ("bob", ["workshop"], 2 * GiB, "storage.cohorts.workshop"),  # a cohort's quota may be smaller
    ("bob", ["workshop", "thesis", "other"], 50 * 1000**3, "storage.cohorts.thesis"),  # the largest
    ("alice", ["thesis"], 123456789, "storage.users.alice"),  # a user's own wins
])
def test_quota_is_the_users_own_else_the_largest_cohorts_else_the_default(user, cohorts, expected, source):
    quota = home_quota(STORAGE, user, cohorts)
    assert (quota.bytes, quota.source) == (expected, source)


def test_no_storage_section_means_no_quota():
    assert home_quota({}, "bob") is None
    assert home_quota({"cohorts": {"workshop": "1Gi"}}, "bob", ["other"]) is None
    assert home_quota({"cohorts": {"workshop": "1Gi"}}, "bob", ["workshop"]).bytes == GiB


def catalog_with(tmp_path, storage):
    data = yaml.safe_load(CATALOG.read_text())
    data["storage"] = storage
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_catalog_loads_its_storage_section(tmp_path):
    catalog = load_catalog(catalog_with(tmp_path, STORAGE))
    assert catalog.storage == STORAGE
    assert home_quota(catalog.storage, "alice").bytes == 123456789


@pytest.mark.parametrize("field, value, says", [
    ("home_quota", -5, "-5 is invalid: a home quota is a size"),
    ("home_quota", "lots", "'lots' is invalid: a home quota is a size"),
    ("home_quota", "1e100", "'1e100' is invalid"),
    ("home_quota", 1e100, "is invalid: a home quota"),
    ("home_quota", 10**100, "out of bounds: a home quota is from 16Mi to 1Pi"),
    ("home_quota", "2Mi", "'2Mi' is out of bounds"),
    ("home_quota", "2000Ti", "out of bounds"),
])
def test_catalog_check_refuses_absurd_quotas_with_file_line_and_field(tmp_path, field, value, says):
    path = catalog_with(tmp_path, {field: value})
    result = subprocess.run([sys.executable, "-m", "oggmhub", "catalog", "check", path], capture_output=True, text=True)
    assert result.returncode == 1, result.stdout
    line = result.stderr.strip().splitlines()[0]
    lineno = next(i for i, text in enumerate(open(path), 1) if text.startswith("  home_quota:"))
    assert line.startswith(f"{path}:{lineno}: storage.{field}: ") and says in line, line


def test_catalog_check_names_a_bad_cohort_or_user_entry_and_unknown_fields(tmp_path):
    path = catalog_with(tmp_path, {"cohorts": {"Bad Name": "1Gi", "ok": "0"}, "users": {"bob": "lots"}, "quotas": 1})
    result = subprocess.run([sys.executable, "-m", "oggmhub", "catalog", "check", path], capture_output=True, text=True)
    err = result.stderr
    assert result.returncode == 1
    assert "storage.cohorts.Bad Name: invalid name" in err
    assert "storage.cohorts.ok: '0' is out of bounds" in err
    assert "storage.users.bob: 'lots' is invalid" in err
    assert "storage.quotas: unknown field 'quotas'" in err


@pytest.mark.parametrize("used, level", [(0, "ok"), (79, "ok"), (80, "warn"), (94, "warn"), (95, "danger"),
                                         (100, "danger"), (101, "over")])
def test_warning_levels_at_80_and_95_percent(used, level):
    assert usage.level(used * GiB, 100 * GiB) == level


def test_a_full_or_over_quota_home_gets_a_rescue_start():
    assert not usage.needs_rescue(50 * MiB, 100 * MiB)
    assert usage.needs_rescue(99 * MiB, 100 * MiB)  # full (past 98%)
    assert usage.needs_rescue(150 * MiB, 100 * MiB)  # a quota lowered below what the home holds
    assert usage.needs_rescue(16 * MiB - 1000, 16 * MiB)  # less than 1 MiB left
    assert not usage.needs_rescue(10**12, None)


def test_free_space_rule_refuses_in_one_sentence_naming_the_reason():
    assert space.start_refusal(10 * GiB, 3 * GiB, 2 * GiB, "/srv/oggmhub") is None
    refusal = space.start_refusal(4 * GiB, 3 * GiB, 2 * GiB, "/srv/oggmhub")
    assert ". " not in refusal and refusal.endswith("must free space.")  # one sentence
    assert "(/srv/oggmhub) has 4 GiB free, homes may still grow by 3 GiB" in refusal
    assert "keeps 2 GiB for its database and logs" in refusal


def test_usage_scan_sums_allocated_bytes_largest_first_without_following_links(tmp_path):
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "a.bin").write_bytes(b"x" * (3 * MiB))
    (tmp_path / "small.txt").write_bytes(b"y" * 5000)
    (tmp_path / "link").symlink_to("/usr")  # never followed
    found = usage.scan(str(tmp_path))
    names = [name for name, _ in found.largest]
    assert names[0] == "big" and "link" in names
    assert dict(found.largest)["big"] >= 3 * MiB and dict(found.largest)["link"] < MiB
    assert found.files == 4 and found.used < 4 * MiB


def test_human_sizes():
    assert [human(7), human(12 * 1024), human(1.5 * GiB), human(512 * MiB)] == ["7 B", "12 KiB", "1.5 GiB", "512 MiB"]


def test_min_free_space_option_refuses_starts_below_it(tmp_path):
    from types import SimpleNamespace

    from traitlets.config import Config

    from oggmhub.backends.local.home_quota import HomeQuotas
    from oggmhub.errors import SpawnFailed

    class Probe(HomeQuotas):
        data_dir = str(tmp_path)  # no home images in it: nothing may grow
        user = SimpleNamespace(name="bob")

    config = Config()
    config.HomeQuotas.min_free_space = "100T"  # c.LocalEnvSpawner.min_free_space on a hub
    with pytest.raises(SpawnFailed, match=r"New servers cannot start now: the disk holding the hub's data "
                                          rf"\({tmp_path}\) has .* free, and the hub keeps 100 TiB"):
        Probe(config=config).check_free_space()
    config.HomeQuotas.min_free_space = 0  # no check
    Probe(config=config).check_free_space()
    assert Probe().min_free_space == 2 * GiB
    Probe().check_free_space()  # this machine has 2 GiB free
    with pytest.raises(SpawnFailed, match="homes may still grow by"):
        Probe().check_free_space(growth=space.free_bytes(str(tmp_path)))


def test_usage_table_rows_and_csv(tmp_path):
    from oggmhub.storage import table

    home, scratch = tmp_path / "home", tmp_path / "scratch"
    home.mkdir()
    scratch.mkdir()
    (home / "a.bin").write_bytes(os.urandom(2 * MiB))
    (scratch / "b.bin").write_bytes(os.urandom(MiB))
    row = table.row("ann", str(home), str(scratch), 4 * MiB, "2026-12-07T10:00:00Z")
    assert 2 * MiB <= row["home_used"] < 2.2 * MiB and MiB <= row["scratch_used"] < 1.2 * MiB
    assert 50 <= row["home_percent"] <= 55
    assert table.row("bob", str(tmp_path / "none"), None, None, "")["home_used"] == 0
    csv = table.to_csv([row]).splitlines()
    assert csv[0] == "user,home_used,home_quota,home_percent,scratch_used,last_activity"
    assert csv[1].startswith(f"ann,{row['home_used']},{4 * MiB},")
    shown = table.for_people(row)
    assert shown["home_quota"] == "4 MiB" and shown["level"] == "ok"
