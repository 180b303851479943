"""The layout says where code runs (docs/architecture.md): no module grows past 500 lines
nor any function past 100, the old entry points still work, and a session module,
imported as a session imports it, loads no hub library. Who may import whom is checked
by the import contracts (``.importlinter``, tests/test_import_contracts.py); the check
here sees what they cannot: the modules a third-party library loads in turn."""

import ast
import configparser
import pkgutil
import subprocess
import sys

import pytest

import oggmhub.session
from support.paths import REPO

SESSION_MODULES = sorted(m.name for m in pkgutil.iter_modules(oggmhub.session.__path__, "oggmhub.session."))
HUB_SIDE = {"kubespawner", "jupyterhub", "jsonschema", "kubernetes_asyncio"}


@pytest.mark.parametrize("module", SESSION_MODULES)
def test_session_modules_import_nothing_hub_side(module):
    code = (f"import sys, importlib; importlib.import_module({module!r}); "
            "print(' '.join(sorted(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert not HUB_SIDE & {m.split(".")[0] for m in loaded}, module
    outside = [m for m in loaded if m.startswith("oggmhub.") and not m.startswith("oggmhub.session")]
    assert outside == [], f"{module} imports {outside}"


def test_session_modules_are_all_listed():
    assert {"oggmhub.session.datasets", "oggmhub.session.dask", "oggmhub.session.env",
            "oggmhub.session.mount_sidecar"} <= set(SESSION_MODULES)


def test_no_module_is_over_500_lines():
    long = {str(p.relative_to(REPO)): n for p in (REPO / "oggmhub").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long


def test_no_function_is_over_100_lines():
    long = {f"{p.relative_to(REPO)}:{node.lineno} {node.name}": node.end_lineno - node.lineno + 1
            for p in (REPO / "oggmhub").rglob("*.py") for node in ast.walk(ast.parse(p.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 100}
    assert not long, long


def test_no_package_dir_and_the_spawner_alias_still_imports():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert "package_dir" not in cfg["options"]
    from oggmhub.backends.kubernetes.spawner import OGGMHubSpawner as Kubernetes
    from oggmhub.spawner import OGGMHubSpawner

    assert OGGMHubSpawner is Kubernetes


def test_the_architecture_map_names_every_module():
    """docs/architecture.md is the map: a module it does not name is a room nobody finds."""
    import re

    from support.paths import REPO

    doc = (REPO / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", doc))
    unnamed = [str(p.relative_to(REPO)) for p in sorted((REPO / "oggmhub").rglob("*.py"))
               if p.stem not in ("__init__", "__main__") and p.stem not in named]
    assert unnamed == [], f"docs/architecture.md does not name {unnamed}"
