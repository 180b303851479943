"""The tutorials: the OGGM one executes (nbclient) inside the local environment built
from images/oggm/; the Slicer and Fiji ones, which need Slicer or Fiji, are validated and
their code compiled.

The OGGM environment is cached in $OGGMHUB_ENV_CACHE (default ~/.cache/oggmhub/envs), so
only the first run, or a change to images/oggm/, builds it (about a minute and a half).
"""

import ast
import os
import subprocess

import nbformat
import pytest

from oggmhub.backends.local.environments import build_local_env, default_root
from support import paths as _paths

REPO = _paths.REPO
NOTEBOOKS = REPO / "notebooks"
# salem 0.3.11 pins this commit of its sample data, and downloads it into ~/.salem_cache
# on first import when it is missing: with no internet here, importing oggm would fail.
# The image ships the real data (postBuild) and links it into the home (start); here a
# stand-in with the one file salem checks for takes its place. Nothing reads it.
SALEM_DATA = "salem-sample-data-454bf696324000d198f574a1bf5bc56e3e489051"


@pytest.fixture(scope="module")
def oggm_env():
    from oggmhub.catalog import load_catalog

    catalog = load_catalog(str(REPO / "hub_config" / "catalog.yaml"))
    return catalog, build_local_env("oggm", catalog, default_root(), progress=None)


def run_notebook(venv, name, env, tmp_path):
    home = tmp_path / "home"
    shapes = home / ".salem_cache" / SALEM_DATA / "shapes" / "world_borders"
    shapes.mkdir(parents=True)
    (shapes / "world_borders.shp").touch()
    out = tmp_path / "executed.ipynb"
    proc = subprocess.run(
        [str(venv / "bin" / "jupyter"), "execute", f"--output={out}", str(NOTEBOOKS / name)],
        capture_output=True, text=True, timeout=300, cwd=home,
        env={**{k: v for k, v in os.environ.items() if not k.startswith(("OGGM_", "JUPYTER"))},
             "HOME": str(home), **env},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    nb = nbformat.read(out, as_version=4)
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    return text, images


def test_oggm_tutorial_runs_in_the_local_oggm_environment(oggm_env, tmp_path):
    """Hintereisferner from a mirror filled from OGGM's real sample data (no stand-in)."""
    from support.local_hub import fill_oggm_mirror, sample_zip

    sample_zip()  # skips, saying so, when ../shared/data is absent
    catalog, venv = oggm_env
    mirror = tmp_path / "oggm-mirror"
    assert fill_oggm_mirror(str(mirror))
    env = {**catalog.environments["oggm"].env, "OGGM_DOWNLOAD_CACHE": str(mirror)}
    text, images = run_notebook(venv, "oggm-getting-started.ipynb", env, tmp_path)
    assert f"download cache: {mirror} (read-only)" in text
    assert "after 300 years: volume" in text and "length: " in text
    assert "Hintereisferner (RGI60-11.00897): area 8.036 km2" in text
    assert "Hintereisferner: area 8.036 km2; modelled volume 0.85" in text
    assert images == 3
    assert f"{mirror}: 1 hosts: github.com" in text
    assert "github.com/OGGM/oggm-sample-data/archive/" in text


def test_oggm_tutorial_without_the_mirror_says_so(oggm_env, tmp_path):
    catalog, venv = oggm_env
    env = {**catalog.environments["oggm"].env, "OGGM_DOWNLOAD_CACHE": str(tmp_path / "not-mounted")}
    text, _ = run_notebook(venv, "oggm-getting-started.ipynb", env, tmp_path)
    assert "after 300 years: volume" in text  # the idealized runs need no data
    assert "OGGM's sample data is not on this hub's data mount" in text
    assert "The OGGM data mirror is not mounted here" in text


def test_catalog_oggm_settings_are_oggms_own_variables(oggm_env):
    """The catalog's OGGM_* names are the ones OGGM's cfg reads (checked in its source)."""
    catalog, venv = oggm_env
    source = "\n".join(p.read_text() for p in venv.glob("lib/python3.*/site-packages/oggm/cfg.py"))
    names = [name for name in catalog.environments["oggm"].env if name.startswith("OGGM_")]
    assert names
    for name in names:
        assert f"'{name}'" in source, f"OGGM does not read {name}"


def test_the_oggm_environment_has_what_notebook_dask_and_jupyterlab_need(oggm_env):
    """KubeCluster for oggmhub.session.dask on Kubernetes; JupyterLab's no-news defaults."""
    import json

    _, venv = oggm_env
    result = subprocess.run([str(venv / "bin" / "python"), "-c", "from dask_kubernetes.operator import KubeCluster"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    overrides = json.loads((venv / "share/jupyter/lab/settings/overrides.json").read_text())
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"


@pytest.mark.parametrize("name, kernel", [
    ("oggm-getting-started.ipynb", "python3"),
    ("slicer-getting-started.ipynb", "slicer-5.8"),
    ("fiji-getting-started.ipynb", "python3"),
])
def test_notebooks_are_valid_and_compile(name, kernel):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == kernel
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# Getting started")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"{name} cell {i}: keep tutorials without outputs"
            ast.parse(cell.source, filename=f"{name}[{i}]")


def test_slicer_tutorial_loads_the_sample_shipped_in_the_image():
    post_build = (REPO / "images" / "slicer" / "postBuild").read_text()
    source = "\n".join(c.source for c in nbformat.read(NOTEBOOKS / "slicer-getting-started.ipynb", 4).cells)
    assert "MR-head.nrrd" in source and "slicer.util.loadVolume" in source
    assert 'cp "$downloads/MR-head.nrrd" "$samples/MR-head.nrrd"' in post_build
    assert "sampledata" not in source.lower(), "SampleData downloads at run time"
