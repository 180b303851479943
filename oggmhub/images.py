"""Environments as images: one repo2docker build context per catalog environment.

``images/<env>/`` holds a build context in repo2docker's *pip* flavour (``runtime.txt``,
``requirements.txt`` with exact pins, ``apt.txt``, ``postBuild``, ``start``), so the same
files build the Kubernetes image (here, with repo2docker) and the local hub's virtualenv
(:mod:`oggmhub.backends.local.environments`).

- :func:`context_hash` / :func:`image_tag`: a tag derived from the context's contents, the
  same on every run and machine, different as soon as any file changes. The catalog keeps
  explicit tags (the hub pod has no ``images/`` folder to hash); a test holds them equal.
- :func:`render`: the Dockerfile repo2docker would build, without a container engine.
- :func:`build`: run repo2docker where a Docker engine answers.

The context is copied into the image at :data:`REPO_DIR` (not ``$HOME``, which the
persistent home volume hides), and oggmhub's notebook-side helpers are installed from a
wheel that :func:`staged_context` adds to a copy of the context (``oggmhub-dist/``);
``postBuild`` installs it with ``--no-deps``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from oggmhub import __version__
from oggmhub.catalog import CatalogError, load_catalog

#: where repo2docker copies the build context inside the image (``--target-repo-dir``)
REPO_DIR = "/srv/repo"
#: the single-user account every image runs as
USER_NAME, USER_ID = "jovyan", 1000
#: folder name, inside a staged context, of the oggmhub wheel that postBuild installs
DIST_DIR = "oggmhub-dist"
IMAGES_DIR_ENV = "OGGMHUB_IMAGES"

_IGNORED_DIRS = {"__pycache__", ".ipynb_checkpoints", ".git", DIST_DIR}
_IGNORED_SUFFIXES = (".pyc", ".pyo", "~")
_IGNORED_NAMES = {".DS_Store"}


class ImageError(Exception):
    """An environment that cannot be rendered, tagged or built; the message says why."""


# --- locating contexts -----------------------------------------------------------------


def images_dir(catalog):
    """``$OGGMHUB_IMAGES``, else the ``images/`` folder beside the catalog's folder."""
    if os.environ.get(IMAGES_DIR_ENV):
        return Path(os.environ[IMAGES_DIR_ENV]).resolve()
    return Path(catalog.path).resolve().parent.parent / "images"


def context_dir(env_name, catalog, root=None):
    """The build context of catalog environment ``env_name``; :class:`ImageError` if none."""
    if env_name not in catalog.environments:
        raise ImageError(
            f"unknown environment {env_name!r}; the catalog's environments: "
            f"{', '.join(catalog.environments)} ({catalog.path})"
        )
    path = Path(root) if root else images_dir(catalog) / env_name
    if not (path / "requirements.txt").is_file():
        raise ImageError(
            f"environment {env_name!r} has no build context: expected {path}/ with a "
            "requirements.txt (repo2docker's pip flavour)"
        )
    return path


def context_files(path):
    """The context's files as sorted relative POSIX paths (no caches, no staged wheel)."""
    path = Path(path)
    files = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_DIRS)
        for name in filenames:
            if name in _IGNORED_NAMES or name.endswith(_IGNORED_SUFFIXES):
                continue
            files.append((Path(dirpath) / name).relative_to(path).as_posix())
    return sorted(files)


# --- tags ------------------------------------------------------------------------------


def context_hash(path):
    """SHA-256 over the context's relative paths and file contents, and oggmhub's version.

    Modes and mtimes are left out, so a fresh clone hashes like the original; the
    oggmhub version is in because the image carries oggmhub's helpers.
    """
    digest = hashlib.sha256(f"oggmhub {__version__}\0".encode())
    for rel in context_files(path):
        data = (Path(path) / rel).read_bytes()
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def image_tag(path):
    """The image tag for a context: ``r2d-`` and the first 12 hex digits of its hash."""
    return f"r2d-{context_hash(path)[:12]}"


# --- staging and rendering -------------------------------------------------------------


def package_source():
    """oggmhub's source tree (the folder with setup.cfg), to build its wheel from."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "setup.cfg").is_file():
        raise ImageError(
            f"oggmhub's source tree is not at {root} (no setup.cfg): images install "
            "oggmhub's helpers from a wheel built from a clone; run from a clone "
            "installed with `pip install -e .`"
        )
    return root


def package_hash():
    """A hash of oggmhub's own files and tutorials (what its wheel holds): a local
    environment whose installed helpers came from other sources gets them reinstalled."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    # the package, and the tutorials its wheel installs (setup.cfg's data_files)
    files = [p for p in root.rglob("*") if "__pycache__" not in p.parts]
    files += sorted((root.parent / "notebooks").glob("*.ipynb"))
    for path in sorted(files):
        if path.is_file():
            digest.update(str(path.relative_to(root.parent)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _uv_from_package():
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return None


def build_wheel(dest, python=None):
    """Build oggmhub's wheel into ``dest`` (from a copy of the source tree); its path."""
    src = package_source()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    skip = shutil.ignore_patterns(
        ".git", "images", "tests", "benchmarks", "node_modules", "build",
        "dist", "*.egg-info", "__pycache__", ".venv", "data", "artifacts", ".pytest_cache",
    )
    with tempfile.TemporaryDirectory(prefix="oggmhub-src-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(src, copy, ignore=skip, symlinks=True)
        uv = shutil.which("uv") or _uv_from_package()
        # uv builds it in a second or two (its cache holds the build backend); pip as the fallback
        result = subprocess.run(
            [uv, "build", "--wheel", "--quiet", "--out-dir", str(dest), str(copy)] if uv and python is None
            else [python or sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                  "--wheel-dir", str(dest), str(copy)],
            capture_output=True, text=True, env={**os.environ, "UV_SYSTEM_CERTS": os.environ.get("UV_SYSTEM_CERTS", "1")},
        )
    if result.returncode:
        raise ImageError(f"building oggmhub's wheel failed:\n{result.stderr.strip()}")
    wheels = sorted(dest.glob("oggmhub-*.whl"))
    if not wheels:
        raise ImageError(f"building oggmhub's wheel left no oggmhub-*.whl in {dest}")
    return wheels[-1]


@contextlib.contextmanager
def staged_context(path):
    """A temporary copy of the context with oggmhub's wheel in ``oggmhub-dist/``."""
    with tempfile.TemporaryDirectory(prefix="oggmhub-context-") as tmp:
        stage = Path(tmp) / Path(path).name
        shutil.copytree(path, stage, ignore=shutil.ignore_patterns(*_IGNORED_DIRS, "*.pyc"))
        build_wheel(stage / DIST_DIR)
        yield stage


def r2d_args(path, image=None, push=False, dry_run=False):
    """repo2docker's command-line arguments for one context."""
    args = ["--user-id", str(USER_ID), "--user-name", USER_NAME, "--target-repo-dir", REPO_DIR]
    if dry_run:
        args.append("--no-build")
    else:
        args.append("--no-run")
    if image:
        args += ["--image-name", image]
    if push:
        args.append("--push")
    return [*args, str(path)]


def render(env_name, catalog, root=None):
    """The Dockerfile repo2docker would build for ``env_name`` (no engine needed).

    It starts with a comment naming the build arguments repo2docker passes with it.
    """
    from repo2docker.__main__ import make_r2d

    path = context_dir(env_name, catalog, root)
    r2d = make_r2d(r2d_args(path, dry_run=True))
    r2d.log.setLevel(logging.WARNING)  # its "Picked Local content provider" chatter
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        r2d.build()
    dockerfile = out.getvalue().strip()
    if "FROM " not in dockerfile:
        raise ImageError(f"repo2docker rendered no Dockerfile for {path}:\n{dockerfile}")
    header = (
        f"# {catalog.environments[env_name].image.name}:{image_tag(path)} from {path.name}/; "
        f"build args: NB_USER={USER_NAME} NB_UID={USER_ID} REPO_DIR={REPO_DIR}\n"
    )
    return header + dockerfile + "\n"


# --- building --------------------------------------------------------------------------


def docker_engine_problem():
    """None if a Docker engine answers, else a sentence saying what was tried."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
        return None
    except Exception as e:  # the docker SDK raises several unrelated types here
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        return f"no Docker engine answers at {where} ({type(e).__name__}: {str(e)[:200]})"


def build(env_name, catalog, push=False, root=None):
    """Build (and with ``push`` push) the image of ``env_name``; its reference.

    Raises :class:`ImageError` when no Docker engine answers or repo2docker fails.
    """
    from repo2docker.__main__ import make_r2d

    path = context_dir(env_name, catalog, root)
    image = f"{catalog.environments[env_name].image.name}:{image_tag(path)}"
    problem = docker_engine_problem()
    if problem:
        raise ImageError(
            f"cannot build {image}: {problem}. Run `oggmhub images build {env_name}` on a "
            f"machine with Docker (or set DOCKER_HOST); `oggmhub images render {env_name}` "
            "shows the Dockerfile without one."
        )
    with staged_context(path) as stage:
        r2d = make_r2d(r2d_args(stage, image=image, push=push))
        try:
            r2d.start()
        except SystemExit as e:
            if e.code:
                raise ImageError(f"repo2docker failed to build {image} (exit {e.code})") from None
    return image


# --- the command line ------------------------------------------------------------------


def _run(args, action):
    try:
        catalog = load_catalog(args.catalog)
        print(action(catalog), end="")
        return 0
    except CatalogError as e:
        print(e, file=sys.stderr)
    except ImageError as e:
        print(f"oggmhub images {args.images_command}: {e}", file=sys.stderr)
    return 1


def register(commands):
    """The ``images`` verbs: render, tag, build."""
    images = commands.add_parser("images", help="build context per environment: render, tag, build")
    verbs = images.add_subparsers(dest="images_command", metavar="ACTION", required=True)
    specs = {
        "render": ("print the Dockerfile repo2docker would build (no Docker needed)",
                   lambda a: lambda c: render(a.env, c)),
        "tag": ("print the image tag derived from the build context's contents",
                lambda a: lambda c: image_tag(context_dir(a.env, c)) + "\n"),
        "build": ("build the image with repo2docker (needs a Docker engine)",
                  lambda a: lambda c: build(a.env, c, push=a.push) + "\n"),
    }
    for verb, (help_text, make_action) in specs.items():
        parser = verbs.add_parser(verb, help=help_text)
        parser.add_argument("env", metavar="ENV", help="an environment of the catalog")
        parser.add_argument("--catalog", help="catalog file (default: $OGGMHUB_CATALOG or hub_config/catalog.yaml)")
        if verb == "build":
            parser.add_argument("--push", action="store_true", help="push the image to its registry after building")
        parser.set_defaults(func=lambda a, make=make_action: _run(a, make(a)))
