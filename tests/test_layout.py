"""The layout says where code runs (docs/architecture.md): session code imports no hub
code, no module grows past 500 lines, and the old entry points still work."""

import configparser
import pkgutil
import subprocess
import sys

import pytest

from conftest import REPO

import oggmhub.session

SESSION_MODULES = sorted(m.name for m in pkgutil.iter_modules(oggmhub.session.__path__, "oggmhub.session."))
HUB_SIDE = {"kubespawner", "jupyterhub", "jsonschema", "kubernetes_asyncio"}


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
