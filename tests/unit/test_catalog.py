"""The catalog loader and `oggmhub catalog check`: good catalogs load, bad ones are named."""

import subprocess
import sys

import pytest
import yaml

from oggmhub.catalog import CatalogError, load_catalog
from oggmhub.session.quantities import parse_memory
from support.paths import CATALOG


def write(tmp_path, data, name="catalog.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False) if not isinstance(data, str) else data)
    return str(path)


def good():
    return yaml.safe_load(CATALOG.read_text())


def problems_of(tmp_path, data):
    with pytest.raises(CatalogError) as info:
        load_catalog(write(tmp_path, data))
    return info.value.problems


def test_shipped_catalog_declares_the_three_environments(catalog):
    assert list(catalog.environments) == ["oggm", "slicer", "fiji"]
    for env in catalog.environments.values():
        assert env.display_name and env.description
        assert env.image.name and env.image.tag
        assert sum(s.default for s in env.sizes.values()) == 1
        for size in env.sizes.values():
            assert 0 < size.cpu_guarantee <= size.cpu_limit
            assert 0 < size.mem_guarantee <= size.mem_limit
    assert catalog.default_environment.name == "oggm"
    assert catalog.environments["oggm"].datasets == ("oggm-mirror",)
    assert catalog.environments["oggm"].env["OGGM_DOWNLOAD_CACHE_RO"] == "1"
    t4 = catalog.environments["slicer"].gpus["t4"]
    assert (t4.count, t4.type, t4.resource) == (1, "nvidia-tesla-t4", "nvidia.com/gpu")
    assert t4.tolerations[0]["key"] == "nvidia.com/gpu"
    assert catalog.environments["oggm"].sizes["small"].mem_limit == 4 * 1024**3


@pytest.mark.parametrize(
    "text, expected",
    [("512Mi", 512 * 1024**2), ("4G", 4 * 1000**3), ("1.5Gi", int(1.5 * 1024**3)), (1024, 1024), ("100", 100)],
)
def test_memory_quantities_read_as_kubernetes_does(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["lots", "4GB", "-1G", "", "4 G", True, 0])
def test_memory_quantity_errors_name_the_value(text):
    with pytest.raises(ValueError, match="not a"):
        parse_memory(text)


def test_every_problem_is_reported_with_file_line_entry_and_field(tmp_path):
    data = good()
    small = data["environments"]["oggm"]["sizes"]["small"]
    small["memroy"] = small.pop("memory")
    data["environments"]["slicer"]["sizes"]["medium"]["memory"]["limit"] = "lots"
    del data["environments"]["fiji"]["image"]
    path = write(tmp_path, data)
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    problems = info.value.problems
    assert len(problems) == 4, problems
    text = "\n".join(problems)
    assert all(p.startswith(path + ":") for p in problems)
    assert "environments.oggm.sizes.small.memroy: unknown field 'memroy' (did you mean 'memory'?)" in text
    assert "environments.oggm.sizes.small: missing required field 'memory'" in text
    assert "environments.slicer.sizes.medium.memory.limit: 'lots' is invalid: a memory size" in text
    assert "environments.fiji: missing required field 'image'" in text
    # line numbers point into the file
    line = int(next(p for p in problems if "'lots'" in p).split(":")[1])
    assert "limit" in (tmp_path / "catalog.yaml").read_text().splitlines()[line - 1]


def test_rules_beyond_the_schema(tmp_path):
    data = good()
    oggm = data["environments"]["oggm"]
    oggm["sizes"]["medium"]["default"] = True  # two defaults
    oggm["sizes"]["large"]["cpu"] = {"guarantee": 8, "limit": 4}
    oggm["sizes"]["large"]["memory"] = {"guarantee": "32Gi", "limit": "16Gi"}
    oggm["datasets"] = ["no-such-data"]
    data["environments"]["fiji"]["default"] = True
    data["cohorts"] = {"glacier-school": {"environments": ["oggm", "matlab"]}}
    text = "\n".join(problems_of(tmp_path, data))
    assert "environments.oggm.sizes: mark exactly one size 'default: true' (found: small, medium)" in text
    assert "environments.oggm.sizes.large.cpu: the guarantee is larger than the limit" in text
    assert "environments.oggm.sizes.large.memory: the guarantee is larger than the limit" in text
    assert "environments.oggm.datasets[0]: unknown dataset 'no-such-data'" in text
    assert "only one environment may be the default; found oggm, fiji" in text
    assert "cohorts.glacier-school.environments[1]: unknown environment 'matlab'" in text


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["environments"].update({"Bad_Name": d["environments"]["oggm"]}), "environments.Bad_Name: invalid name 'Bad_Name'"),
        (lambda d: d.update({"environments": {}}), "environments: must not be empty"),
        (lambda d: d["environments"]["oggm"]["image"].update({"tag": "has space"}), "environments.oggm.image.tag: 'has space' is invalid"),
        (lambda d: d["environments"]["slicer"]["gpus"]["t4"].update({"count": 0}), "environments.slicer.gpus.t4.count: 0 is invalid: a GPU count"),
        (lambda d: d["environments"]["oggm"]["env"].update({"1BAD": "x"}), "environments.oggm.env.1BAD: invalid name '1BAD'"),
        (lambda d: d["environments"]["oggm"]["sizes"]["small"]["cpu"].update({"limit": "two"}), "environments.oggm.sizes.small.cpu.limit: 'two' is invalid: a CPU amount"),
        (lambda d: d.update({"extras": 1}), "extras: unknown field 'extras'; allowed: budgets, cohorts, datasets, environments, projects, storage, version"),
    ],
)
def test_schema_errors_are_specific(tmp_path, mutate, expected):
    data = good()
    mutate(data)
    assert any(expected in p for p in problems_of(tmp_path, data)), problems_of(tmp_path, data)


def test_yaml_problems(tmp_path):
    assert "duplicate key 'oggm'" in problems_of(tmp_path, "environments:\n  oggm: {}\n  oggm: {}\n")[0]
    assert "not valid YAML at line 3" in problems_of(tmp_path, "environments:\n  a: [b\n  c: d\n")[0]
    assert "the catalog is empty" in problems_of(tmp_path, "")[0]
    with pytest.raises(CatalogError, match="cannot read the catalog"):
        load_catalog(str(tmp_path / "missing.yaml"))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "oggmhub", *args], capture_output=True, text=True)


def test_cli_check_accepts_the_shipped_catalog():
    result = run_cli("catalog", "check", str(CATALOG))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "oggm" in result.stdout


def test_cli_check_names_each_error_one_line_each(tmp_path):
    data = good()
    small = data["environments"]["oggm"]["sizes"]["small"]
    small["memroy"] = small.pop("memory")
    data["environments"]["slicer"]["sizes"]["medium"]["memory"]["limit"] = "lots"
    del data["environments"]["fiji"]["image"]
    result = run_cli("catalog", "check", write(tmp_path, data))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 5 and lines[-1].endswith("4 problems")
    assert any("memroy" in line for line in lines)
    assert any("'lots'" in line for line in lines)
    assert any("fiji: missing required field 'image'" in line for line in lines)
