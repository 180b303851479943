"""The import contracts (``.importlinter``, docs/architecture.md "Who imports whom") hold,
and each one fails when the import it forbids is planted in a copy of the package.

``lint-imports`` runs in a child process, from the folder whose ``oggmhub`` it checks:
the repository's own, or a copy in ``tmp_path`` with one import planted.
"""

import configparser
import pkgutil
import shutil
import subprocess
import sys

import pytest

import oggmhub
from support import paths as _paths

REPO = _paths.REPO
CONTRACTS = {  # id in .importlinter -> its name, as lint-imports prints it
    "session": "Session code imports nothing hub-side",
    "foundation": "The foundation imports no feature package",
    "kubernetes-not-local": "The Kubernetes backend does not import the local one",
    "mounts": "The mounts package imports no backend",
    "no-circles": "No import circle in oggmhub",
}
LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"


def lint_imports(folder):
    """Run lint-imports on ``folder``'s oggmhub; ``(exit code, output)``."""
    result = subprocess.run([sys.executable, "-c", LINT], cwd=folder, capture_output=True, text=True, timeout=300,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(folder), "LANG": "C.UTF-8"})
    return result.returncode, result.stdout + result.stderr


def verdicts(output):
    """``{contract name: "KEPT" or "BROKEN"}`` from lint-imports' summary."""
    found = {}
    for line in output.splitlines():
        for name in CONTRACTS.values():
            if line.startswith(name + " ") and line.split()[-1] in ("KEPT", "BROKEN"):
                found[name] = line.split()[-1]
    return found


def contracts():
    config = configparser.ConfigParser()
    config.read(REPO / ".importlinter")
    return {section.split(":")[-1]: config[section] for section in config.sections() if section.count(":") == 2}


def listed(contract, key):
    return {line.strip() for line in contract[key].splitlines() if line.strip()}


def test_the_repository_keeps_every_contract():
    code, output = lint_imports(REPO)
    assert verdicts(output) == {name: "KEPT" for name in CONTRACTS.values()}, output
    assert code == 0, output


def test_the_architecture_doc_says_how_to_run_them():
    docs = (REPO / "docs" / "architecture.md").read_text()
    assert "```bash\nlint-imports\n```" in docs and "`.importlinter`" in docs


def test_the_contracts_are_the_ones_named_here():
    assert {key: c["name"] for key, c in contracts().items()} == CONTRACTS


def test_session_and_foundation_contracts_name_every_other_part_of_oggmhub():
    """A new package is forbidden to session code and the foundation until someone says otherwise."""
    parts = {f"oggmhub.{m.name}" for m in pkgutil.iter_modules(oggmhub.__path__)}
    session, foundation = contracts()["session"], contracts()["foundation"]
    assert {m for m in listed(session, "forbidden_modules") if m.startswith("oggmhub.")} == parts - {"oggmhub.session"}
    assert listed(foundation, "forbidden_modules") == parts - listed(foundation, "source_modules") - {"oggmhub.session"}


# (module to plant in, the import planted, the contract it breaks); planted inside a
# function where that shows imports there count too, and through a third module where
# that shows indirect imports do
PLANTED = {
    "session imports hub code": ("session/quantities.py", "def f():\n    from oggmhub import picker\n", "session"),
    "session imports jupyterhub": ("session/env.py", "import jupyterhub.utils\n", "session"),
    "session imports the foundation": ("session/tutorials.py", "from oggmhub.limits import quote\n", "session"),
    "the catalog imports cohorts": ("catalog.py", "def f():\n    from oggmhub.cohorts import model\n", "foundation"),
    "errors imports the welcome page": ("errors.py", "from oggmhub import welcome\n", "foundation"),
    "the Kubernetes pod imports the local backend": (
        "backends/kubernetes/pod.py", "from oggmhub.backends.local import environments\n", "kubernetes-not-local"),
    "the Kubernetes spawner reaches it through the picker": (
        "picker.py", "def f():\n    from oggmhub.backends.local import hub\n", "kubernetes-not-local"),
    "the mount options import a backend": ("mounts/options.py", "from oggmhub.backends import session_env\n", "mounts"),
    "the mount table imports the mount process": ("mounts/table.py", "from oggmhub.mounts import process\n", "no-circles"),
}


@pytest.mark.parametrize("where, planted, contract", PLANTED.values(), ids=PLANTED)
def test_each_contract_catches_a_planted_import(tmp_path, where, planted, contract):
    shutil.copytree(REPO / "oggmhub", tmp_path / "oggmhub", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / ".importlinter", tmp_path)
    module = tmp_path / "oggmhub" / where
    module.write_text(module.read_text() + "\n\n" + planted)

    code, output = lint_imports(tmp_path)
    assert code != 0, output
    # (an import planted may break another contract too: the import it adds may close a
    # circle, or reach the hub from the foundation through the session code it imports)
    assert verdicts(output)[CONTRACTS[contract]] == "BROKEN", output
    importer = "oggmhub." + where.removesuffix(".py").replace("/", ".")
    if contract == "no-circles":  # named relative to the package with the circle
        importer = "." + importer.rsplit(".", 1)[-1] + " -> "
    assert importer in output, output  # the report names the importer
