"""The layout says where code runs (docs/architecture.md): session code imports no hub
code, the foundation imports no feature package, the cohorts package has no import
circle, no module grows past 500 lines, and the old entry points still work."""

import ast
import configparser
import pkgutil
import subprocess
import sys

import pytest

from conftest import REPO

import oggmhub.session

SESSION_MODULES = sorted(m.name for m in pkgutil.iter_modules(oggmhub.session.__path__, "oggmhub.session."))
HUB_SIDE = {"kubespawner", "jupyterhub", "jsonschema", "kubernetes_asyncio"}
# the foundation: what every part of the hub builds on; it may import itself and oggmhub.session
FOUNDATION = ["catalog", "catalog_setting", "choice", "errors", "identifiers", "limits", "times",
              "user_folders", "username_clash"]


def oggmhub_imports(source):
    """Every oggmhub module (or name in one) that ``source`` imports, at any depth:
    inside functions too, where an import would hide a loop."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return {n for n in names if n.startswith("oggmhub.")}


def beyond_foundation(source):
    """The oggmhub imports of ``source`` that are neither the foundation nor session code."""
    return sorted(n for n in oggmhub_imports(source) if n.split(".")[1] not in (*FOUNDATION, "session"))


@pytest.mark.parametrize("module", FOUNDATION)
def test_the_foundation_imports_no_feature_package(module):
    assert beyond_foundation((REPO / "oggmhub" / f"{module}.py").read_text()) == []


def test_the_foundation_check_catches_a_hidden_import():
    planted = "from oggmhub import times, welcome\n\ndef f():\n    from oggmhub.cohorts.model import parse_time\n"
    assert beyond_foundation(planted) == ["oggmhub.cohorts.model", "oggmhub.cohorts.model.parse_time", "oggmhub.welcome"]


def test_the_cohorts_package_has_no_import_circle():
    package = REPO / "oggmhub" / "cohorts"
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    graph = {m: {n.split(".")[2] for n in oggmhub_imports((package / f"{m}.py").read_text())
                 if n.startswith("oggmhub.cohorts.") and n.split(".")[2] in modules} - {m}
             for m in modules}
    done, path = set(), []

    def visit(module):
        assert module not in path, f"import circle: {' -> '.join(path[path.index(module):] + [module])}"
        if module not in done:
            path.append(module)
            for other in sorted(graph[module]):
                visit(other)
            path.pop()
            done.add(module)

    for module in sorted(graph):
        visit(module)
    assert "api" in graph["routes"] and "pages" in graph["routes"]  # the check sees real imports


def test_the_documented_session_import_check_passes():
    docs = (REPO / "docs" / "architecture.md").read_text()
    [command] = [line for line in docs.splitlines() if line.startswith('python3 -c "import sys, oggmhub.session')]
    code = command[len('python3 -c "'):-1]
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


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


def test_no_package_dir_and_the_spawner_alias_still_imports():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert "package_dir" not in cfg["options"]
    from oggmhub.backends.kubernetes.spawner import OGGMHubSpawner as Kubernetes
    from oggmhub.spawner import OGGMHubSpawner

    assert OGGMHubSpawner is Kubernetes
