"""The image tool: repo2docker build contexts rendered without Docker, and their tags."""

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys

import pytest

from oggmhub import images
from support import paths as _paths

REPO = _paths.REPO
CATALOG = REPO / "hub_config" / "catalog.yaml"

ENVS = ["oggm", "slicer", "fiji"]
HUB_JUPYTERHUB_MAJOR = importlib.metadata.version("jupyterhub").split(".")[0]


def oggmhub_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "oggmhub", *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})}, timeout=120)


@pytest.fixture(scope="module")
def dockerfiles():
    from oggmhub.catalog import load_catalog

    catalog = load_catalog(str(CATALOG))
    return {env: images.render(env, catalog) for env in ENVS}


def pins(env):
    lines = (REPO / "images" / env / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("env", ENVS)
def test_render_is_a_pip_flavoured_build_as_uid_1000(env, dockerfiles):
    dockerfile = dockerfiles[env]
    assert dockerfile.splitlines()[1].startswith("FROM ")
    assert "NB_UID=1000" in dockerfile.splitlines()[0] and "NB_USER=jovyan" in dockerfile.splitlines()[0]
    assert f"REPO_DIR={images.REPO_DIR}" in dockerfile.splitlines()[0], "the context must not land in $HOME"
    assert "COPY --chown=1000:1000 src/ ${REPO_DIR}/" in dockerfile
    assert 'pip install --no-cache-dir -r "requirements.txt"' in dockerfile
    assert "ENV KERNEL_PYTHON_PREFIX=${NB_PYTHON_PREFIX}" in dockerfile, "one environment: Python 3.11"
    # postBuild and the image's final commands run as the user, never as root
    tail = dockerfile[dockerfile.index("# We always want containers to run as non-root"):]
    assert "USER ${NB_USER}" in tail and "USER root" not in tail
    assert "RUN ./postBuild" in tail and 'ENV R2D_ENTRYPOINT="${REPO_DIR}/start"' in tail
    assert "environment.yml" not in dockerfile


@pytest.mark.parametrize("env", ENVS)
def test_every_requirement_is_pinned_and_the_common_tools_are_there(env):
    requirements = pins(env)
    unpinned = [r for r in requirements if not re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[A-Za-z0-9_.+\-]+", r)]
    assert not unpinned, f"images/{env}/requirements.txt: not pinned with ==: {unpinned}"
    names = {r.split("==")[0].lower().replace("_", "-"): r.split("==")[1] for r in requirements}
    assert names["jupyterhub"].split(".")[0] == HUB_JUPYTERHUB_MAJOR, "jupyterhub-singleuser must match the hub"
    for tool in ("jupyterlab", "jupyter-server-proxy", "dask-labextension", "nbgitpuller", "ipykernel",
                 "dask-kubernetes"):  # oggmhub.session.dask's KubeCluster runs in the notebook
        assert tool in names, f"images/{env} lacks {tool}"
    if env != "oggm":
        assert "jupyter-remote-desktop-proxy" in names
    assert (REPO / "images" / env / "runtime.txt").read_text().strip() == "python-3.11"
    assert not (REPO / "images" / env / "environment.yml").exists()


def test_oggm_pins_an_exact_release_and_the_scientific_stack():
    names = {r.split("==")[0].lower(): r.split("==")[1] for r in pins("oggm")}
    assert names["oggm"] == "1.6.3"
    for pkg in ("salem", "geopandas", "rasterio", "xarray", "netcdf4", "matplotlib", "dask"):
        assert pkg in names, pkg


@pytest.mark.parametrize("env", ENVS)
def test_software_lives_in_the_environment_not_in_home(env):
    context = REPO / "images" / env
    post_build = (context / "postBuild").read_text()
    start = (context / "start").read_text()
    code = "\n".join(line for line in post_build.splitlines() if not line.lstrip().startswith("#"))
    assert "$HOME" not in code and "~/" not in code and "--user" not in code, f"{env}/postBuild writes to the home"
    assert "oggmhub-dist/oggmhub-*.whl" in code and "--no-deps" in code, "oggmhub's helpers are installed"
    assert 'cd "$HOME"' in start and 'exec "$@"' in start, "sessions start in the home, running the command"
    if env in ("slicer", "fiji"):
        assert f'{env}="${{NB_PYTHON_PREFIX}}/opt/{env}"' in code
        for pkg in ("tigervnc-standalone-server", "xfce4", "dbus-x11"):
            assert pkg in images_apt(env), f"{env} desktop needs {pkg}"


@pytest.mark.parametrize("env", ["slicer", "fiji"])
def test_the_desktop_session_gets_the_environments_menu(env, tmp_path):
    """TigerVNC's vncserver drops XDG_DATA_DIRS; the start script hands the desktop
    oggmhub's session script, and a copy of the menu path for it to put back."""
    prefix, home = tmp_path / "env", tmp_path / "home"
    home.mkdir()
    result = subprocess.run(
        [str(REPO / "images" / env / "start"), "env"], capture_output=True, text=True, check=True,
        env={"PATH": os.environ["PATH"], "HOME": str(home), "NB_PYTHON_PREFIX": str(prefix)},
    )
    seen = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert seen["JUPYTER_REMOTE_DESKTOP_PROXY_XSTARTUP"] == f"{prefix}/share/oggmhub/xstartup"
    assert seen["OGGMHUB_XDG_DATA_DIRS"] == seen["XDG_DATA_DIRS"]
    assert seen["XDG_DATA_DIRS"].split(":")[0] == f"{prefix}/share"


def test_oggmhubs_wheel_installs_the_desktop_session_script(tmp_path):
    import zipfile

    wheel = images.build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        entry = next(i for i in zf.infolist() if i.filename.endswith(".data/data/share/oggmhub/xstartup"))
        assert (entry.external_attr >> 16) & 0o111, "vncserver executes it: it must be executable"
        script = zf.read(entry).decode()
    assert 'XDG_DATA_DIRS="$OGGMHUB_XDG_DATA_DIRS"' in script and "xfce4-session" in script


def images_apt(env):
    from oggmhub.backends.local.environments import apt_packages

    return apt_packages(REPO / "images" / env)


def test_slicer_is_pinned_verified_and_its_kernel_registered_system_wide():
    post_build = (REPO / "images" / "slicer" / "postBuild").read_text()
    assert re.search(r"^SLICER_VERSION=5\.\d+\.\d+$", post_build, re.M)
    assert re.search(r"^SLICER_SIZE=\d+$", post_build, re.M)
    assert 'sha512sum "$downloads/$tarball"' in post_build and "/files" in post_build, "checked against the server's SHA-512"
    installer = (REPO / "images" / "slicer" / "slicer_install_jupyter.py").read_text()
    assert '"kernelspec", "install"' in installer and '"--prefix", prefix' in installer
    assert "installSlicerKernel" not in installer.replace("not with SlicerJupyter's installSlicerKernel", ""), \
        "SlicerJupyter's installSlicerKernel registers the kernel under $HOME (--user)"
    assert "kernels/slicer-*/kernel.json" in post_build


def test_fiji_is_pinned_with_its_jdk_and_pyimagej_needs_no_download():
    context = REPO / "images" / "fiji"
    post_build = (context / "postBuild").read_text()
    assert re.search(r"^FIJI_BUILD=\d{8}-\d{4}$", post_build, re.M)
    assert "linux64-jdk.zip" in post_build and "sha256sum" in post_build
    assert "imagej.init('$fiji', mode='headless')" in post_build
    assert "JAVA_HOME" in (context / "start").read_text()
    names = {r.split("==")[0].lower() for r in pins("fiji")}
    assert {"pyimagej", "scyjava", "jpype1"} <= names


# --- tags ------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_catalog_tags_are_the_context_hashes(env, catalog):
    """The catalog keeps explicit tags (the hub pod has no images/ to hash): they must
    follow the contexts. After editing images/<env>/, put `oggmhub images tag <env>` in
    hub_config/catalog.yaml."""
    assert catalog.environments[env].image.tag == images.image_tag(REPO / "images" / env)


def test_tag_is_stable_and_path_independent(tmp_path):
    original = REPO / "images" / "oggm"
    copy = tmp_path / "elsewhere" / "oggm"
    shutil.copytree(original, copy)
    os.utime(copy / "requirements.txt", (0, 0))  # mtimes do not count
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert images.image_tag(copy) == images.image_tag(original) == images.image_tag(original)
    assert re.fullmatch(r"r2d-[0-9a-f]{12}", images.image_tag(original))


def test_tag_changes_when_any_file_changes(tmp_path):
    context = tmp_path / "oggm"
    shutil.copytree(REPO / "images" / "oggm", context)
    tags = {images.image_tag(context)}
    with open(context / "requirements.txt", "a") as f:
        f.write("# a comment is a change too\n")
    tags.add(images.image_tag(context))
    (context / "apt.txt").write_text("less\n")
    tags.add(images.image_tag(context))
    (context / "apt.txt").rename(context / "apt2.txt")  # a rename changes it
    tags.add(images.image_tag(context))
    assert len(tags) == 4


def test_cli_tag_and_render():
    tag = oggmhub_cli("images", "tag", "fiji")
    assert tag.returncode == 0, tag.stderr
    assert tag.stdout.strip() == images.image_tag(REPO / "images" / "fiji")
    render = oggmhub_cli("images", "render", "oggm")
    assert render.returncode == 0, render.stderr
    assert "FROM docker.io/library/buildpack-deps" in render.stdout


def test_cli_unknown_environment_lists_the_catalogs():
    result = oggmhub_cli("images", "render", "matlab")
    assert result.returncode == 1
    assert "unknown environment 'matlab'; the catalog's environments: oggm, slicer, fiji" in result.stderr


def test_build_without_a_docker_engine_fails_clearly(tmp_path):
    result = oggmhub_cli("images", "build", "oggm", "--push",
                         env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert result.returncode == 1
    assert "cannot build ghcr.io/oggmhub/oggm:r2d-" in result.stderr
    assert "no Docker engine answers at unix://" in result.stderr
    assert "oggmhub images render oggm" in result.stderr
