"""The local environment builder: real virtualenvs, real pip, real postBuild scripts.

The contexts here are small ones made for the test (the OGGM one is built, and its
notebook run, in test_notebooks.py).
"""

import os
import subprocess
import threading

import pytest

from oggmhub.backends.local.environments import (
    LocalEnvError,
    apt_packages,
    build_local_env,
    missing_apt_packages,
)
from support import paths as _paths

REPO = _paths.REPO


def make_context(path, requirements="jupyterhub==6.1.1\n", post_build=None, apt=None, runtime="python-3.11"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "runtime.txt").write_text(runtime + "\n")
    (path / "requirements.txt").write_text(requirements)
    if post_build is not None:
        (path / "postBuild").write_text("#!/bin/bash\nset -euo pipefail\n" + post_build)
    if apt is not None:
        (path / "apt.txt").write_text(apt)
    return path


# what every test postBuild records: where it ran, with which HOME, and that oggmhub's
# wheel was staged for it
RECORD = (
    'echo "$HOME" > "$NB_PYTHON_PREFIX/postbuild-home"\n'
    'ls oggmhub-dist/ > "$NB_PYTHON_PREFIX/postbuild-dist"\n'
)


@pytest.fixture
def tiny(tmp_path):
    return make_context(tmp_path / "ctx" / "oggm", post_build=RECORD)


def test_builds_once_for_concurrent_callers_and_reuses_it(catalog, tiny, tmp_path):
    root = tmp_path / "envs"
    lines, paths, errors = [], [], []

    def build():
        try:
            paths.append(build_local_env("oggm", catalog, root, progress=lines.append, context=tiny))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    venv = paths[0]
    assert paths == [venv] * 2 and venv.parent == root and venv.name.startswith("oggm-")
    assert sum("Building environment" in line for line in lines) == 1, "two callers, one build"
    steps = [line for line in lines if line.percent is not None]
    assert any(line.startswith("Resolved ") for line in steps) and any("postBuild" in line for line in steps), lines
    percents = [line.percent for line in steps]
    assert percents[-1] > percents[0] and len(set(percents)) >= 4, f"the build's percentage advances: {percents}"
    assert (venv / "bin" / "jupyterhub-singleuser").exists()
    home = (venv / "postbuild-home").read_text().strip()
    assert home != os.path.expanduser("~") and not os.path.exists(home), "postBuild ran with a scratch HOME"
    assert (venv / "postbuild-dist").read_text().startswith("oggmhub-")

    lines.clear()
    assert build_local_env("oggm", catalog, root, progress=lines.append, context=tiny) == venv
    assert not any("Building environment" in line for line in lines), "an unchanged spec is not rebuilt"

    with open(tiny / "requirements.txt", "a") as f:
        f.write("# edited\n")
    lines.clear()
    rebuilt = build_local_env("oggm", catalog, root, progress=lines.append, context=tiny)
    assert sum("Building environment" in line for line in lines) == 1, "a changed spec is rebuilt"
    assert rebuilt != venv and (venv / "bin" / "python").exists(), "a running server's env stays"

    # what a user `pip install --user`s lands in their home and is seen by the environment,
    # while the hub's own packages stay invisible
    home = tmp_path / "home"
    home.mkdir()
    wheel = make_wheel(tmp_path, "glacier_notes", "VERSION = '1.0'\n")
    env = {**os.environ, "HOME": str(home)}
    env.pop("PYTHONNOUSERSITE", None)
    python = str(rebuilt / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--user", "--no-index", "--no-deps", str(wheel)],
                   env=env, check=True, capture_output=True)
    assert list(home.glob(".local/lib/python3*/site-packages/glacier_notes"))
    code = "import glacier_notes, importlib.util as u; print(glacier_notes.VERSION, u.find_spec('kmock'))"
    out = subprocess.run([python, "-c", code], env=env, check=True, capture_output=True, text=True).stdout
    assert out.split() == ["1.0", "None"], out


def make_wheel(tmp_path, name, source):
    """A minimal pure-Python wheel, written by hand (no build backend, no network)."""
    import base64
    import hashlib
    import zipfile

    path = tmp_path / f"{name}-1.0-py3-none-any.whl"
    files = {
        f"{name}/__init__.py": source,
        f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{name}-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    with zipfile.ZipFile(path, "w") as zf:
        for arcname, text in files.items():
            data = text.encode()
            zf.writestr(arcname, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arcname},sha256={digest},{len(data)}")
        record.append(f"{name}-1.0.dist-info/RECORD,,")
        zf.writestr(f"{name}-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def test_missing_download_says_what_and_leaves_nothing(catalog, tmp_path):
    context = make_context(
        tmp_path / "ctx" / "slicer", requirements="# nothing to install\n",
        post_build='echo "oggmhub-missing: Slicer-5.8.1-linux-amd64.tar.gz could not be downloaded" >&2; exit 3\n',
    )
    root = tmp_path / "envs"
    with pytest.raises(LocalEnvError) as e:
        build_local_env("slicer", catalog, root, context=context)
    message = str(e.value)
    assert "environment 'slicer' cannot be built on this machine" in message
    assert "Slicer-5.8.1-linux-amd64.tar.gz could not be downloaded" in message
    assert str(root / "downloads") in message, "it says where to put the file by hand"
    assert not (root / "slicer").exists(), "no half-built venv is left behind"


def test_missing_debian_packages_are_named_with_the_install_command(catalog, tmp_path):
    context = make_context(tmp_path / "ctx" / "fiji", apt="# the desktop\nbash oggmhub-no-such-package\n")
    with pytest.raises(LocalEnvError, match=r"needs Debian packages this machine lacks .*apt\.txt\): "
                                            r"oggmhub-no-such-package\. The hub's administrator installs them with: "
                                            r"apt-get install -y oggmhub-no-such-package$"):
        build_local_env("fiji", catalog, tmp_path / "envs", context=context)
    assert missing_apt_packages(["bash", "oggmhub-no-such-package"]) == ["oggmhub-no-such-package"]


def test_the_real_slicer_and_fiji_contexts_say_what_this_machine_lacks(catalog, tmp_path):
    """Here (no desktop packages, no internet) the real contexts stop with a clear reason."""
    for env in ("slicer", "fiji"):
        lacking = missing_apt_packages(apt_packages(REPO / "images" / env))
        if not lacking:
            continue  # this machine has the desktop: the download is what stops the build
        with pytest.raises(LocalEnvError, match=f"apt-get install -y {' '.join(lacking)}$"):
            build_local_env(env, catalog, tmp_path / "envs")


def test_wrong_python_and_unknown_environment(catalog, tmp_path):
    context = make_context(tmp_path / "ctx" / "oggm", runtime="python-3.9")
    with pytest.raises(LocalEnvError, match=r"needs Python 3\.9 .* but the hub runs 3\.11\.\d+ .* no python3\.9 was found"):
        build_local_env("oggm", catalog, tmp_path / "envs", context=context)
    with pytest.raises(LocalEnvError, match="unknown environment 'matlab'; the catalog's environments: oggm"):
        build_local_env("matlab", catalog, tmp_path / "envs")


def test_requirements_without_jupyterhub_are_refused(catalog, tmp_path):
    context = make_context(tmp_path / "ctx" / "oggm", requirements="# nothing\n")
    with pytest.raises(LocalEnvError, match="has no jupyterhub-singleuser: .* must pin jupyterhub"):
        build_local_env("oggm", catalog, tmp_path / "envs", context=context)
    assert not (tmp_path / "envs" / "oggm").exists()


def test_a_failed_install_says_why_in_one_line_with_the_log_one_path_away(catalog, tmp_path):
    """The real installer against the real index: a pin that does not exist fails the build with
    the package named (not the installer's output), the full log on disk, nothing half-built
    left, and the next attempt, with the pin fixed, starts clean and succeeds."""
    context = make_context(tmp_path / "ctx" / "oggm", requirements="jupyterhub==6.1.1\noggmhub-no-such-dist==1.0\n")
    root = tmp_path / "envs"
    with pytest.raises(LocalEnvError) as e:
        build_local_env("oggm", catalog, root, context=context)
    message = str(e.value)
    assert "oggmhub-no-such-dist" in message and "is not on the package index" in message, message
    assert len(message) < 400 and "\n" not in message, message
    log = root / "logs" / "oggm.log"
    assert f"full build log: {log}" in message and "oggmhub-no-such-dist" in log.read_text()
    assert [p.name for p in root.iterdir() if p.name.startswith("oggm-")] == [], "the half-built folder is removed"
    (context / "requirements.txt").write_text("jupyterhub==6.1.1\n")
    assert (build_local_env("oggm", catalog, root, context=context) / "bin" / "jupyterhub-singleuser").exists()


def test_python_too_old_for_a_pin_is_named():
    """uv's and pip's own wording (as they print it) become one sentence."""
    from oggmhub.backends.local.build_steps import summarize_failure

    uv = ["error: No solution found when resolving dependencies",
          "  cause: Because the current Python version (3.11.2) does not satisfy Python>=3.11.5 and "
          "soupsieve==4.1.2 depends on Python>=3.11.5, we can conclude that soupsieve==4.1.2 cannot be used."]
    assert summarize_failure(uv, "3.11.2") == "soupsieve 4.1.2 needs Python >= 3.11.5; this machine has 3.11.2"
    pip = ["ERROR: Ignored the following versions that require a different python version: "
           "4.1.1 Requires-Python >=3.11.5; 4.1.2 Requires-Python >=3.11.5",
           "ERROR: Could not find a version that satisfies the requirement soupsieve==4.1.2 (from versions: 2.9)",
           "ERROR: No matching distribution found for soupsieve==4.1.2"]
    assert summarize_failure(pip, "3.11.2") == "soupsieve 4.1.2 needs Python >= 3.11.5; this machine has 3.11.2"
