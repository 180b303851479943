"""The local environment builder: real virtualenvs, real pip, real postBuild scripts.

The contexts here are small ones made for the test (the OGGM one is built, and its
notebook run, in test_notebooks.py).
"""

import os
import pathlib
import subprocess
import threading

import pytest

from oggmhub.backends.local.environments import LocalEnvError, apt_packages, build_local_env, missing_apt_packages

REPO = pathlib.Path(__file__).resolve().parent.parent


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
    assert sum("building in" in line for line in lines) == 1, "two callers, one build"
    assert any(line.startswith("pip: ") for line in lines), "pip's output reaches the progress callback"
    assert (venv / "bin" / "jupyterhub-singleuser").exists()
    home = (venv / "postbuild-home").read_text().strip()
    assert home != os.path.expanduser("~") and not os.path.exists(home), "postBuild ran with a scratch HOME"
    assert (venv / "postbuild-dist").read_text().startswith("oggmhub-")

    lines.clear()
    assert build_local_env("oggm", catalog, root, progress=lines.append, context=tiny) == venv
    assert not any("building in" in line for line in lines), "an unchanged spec is not rebuilt"

    with open(tiny / "requirements.txt", "a") as f:
        f.write("# edited\n")
    lines.clear()
    rebuilt = build_local_env("oggm", catalog, root, progress=lines.append, context=tiny)
    assert sum("building in" in line for line in lines) == 1, "a changed spec is rebuilt"
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
                                            r"oggmhub-no-such-package\. Install them with: "
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
    with pytest.raises(LocalEnvError, match=r"needs python-3\.9 .* but the hub runs python-3\.11"):
        build_local_env("oggm", catalog, tmp_path / "envs", context=context)
    with pytest.raises(LocalEnvError, match="unknown environment 'matlab'; the catalog's environments: oggm"):
        build_local_env("matlab", catalog, tmp_path / "envs")


def test_requirements_without_jupyterhub_are_refused(catalog, tmp_path):
    context = make_context(tmp_path / "ctx" / "oggm", requirements="# nothing\n")
    with pytest.raises(LocalEnvError, match="has no jupyterhub-singleuser: .* must pin jupyterhub"):
        build_local_env("oggm", catalog, tmp_path / "envs", context=context)
    assert not (tmp_path / "envs" / "oggm").exists()
