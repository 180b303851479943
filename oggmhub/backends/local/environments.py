"""Local environments: a catalog environment's build context as a virtualenv on this machine.

The local hub runs each user's server inside a virtualenv built from the same files
repo2docker builds the image from (``images/<env>/``, see :mod:`oggmhub.images`):

1. ``runtime.txt`` names the Python minor version (``python-3.11``): the venv is made
   with the hub's own Python where it matches, else with a ``python3.11`` found on PATH
   (or by uv), else the build is refused naming what to install;
2. every package of ``apt.txt`` must already be installed (checked with ``dpkg-query``;
   installing system packages is the machine owner's job, not the hub's);
3. ``python -m venv``, then ``uv pip install -r requirements.txt`` (exact pins, from PyPI;
   progress in steps, see :mod:`.build_steps`; every line in ``<root>/logs/<env>.log``, and a
   failure summarized in one sentence naming the cause, the log's path beside it);
4. ``postBuild`` runs with ``NB_PYTHON_PREFIX`` set to the venv, in a staged copy of the
   context that holds oggmhub's wheel, with ``HOME`` pointed at a scratch folder so that
   nothing is registered under the real home. A postBuild that needs something this
   machine cannot provide (a download with no internet) exits 3 and says what, in lines
   starting ``oggmhub-missing:``; files it downloads may be put in ``<root>/downloads``
   by hand (``$OGGMHUB_DOWNLOADS``).

With ``shared=True`` (a hub whose users have system accounts of their own) the venv must
be runnable by every account: it is made with a Python every account can execute (the
hub's own where it can, else the system's ``/usr/bin/python3.X``; pyenv's under
``/root``, mode 0700, cannot serve) and left root-owned and world-readable.

A venv is rebuilt only when its context hash (or the Python) changes: a marker file in
the venv records what it was built from, and is written last. Concurrent callers for the
same environment wait on a file lock and reuse the first one's build.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from oggmhub import images
from oggmhub.backends.local import build_steps
from oggmhub.backends.local.build_steps import Step

MARKER = "oggmhub-env.json"
HELPERS_MARKER = "oggmhub-helpers.sha256"  # which oggmhub files its installed wheel was built from
ENV_CACHE_ENV = "OGGMHUB_ENV_CACHE"


class LocalEnvError(Exception):
    """An environment this machine cannot build; the message says what is missing and how to provide it."""


def default_root():
    """``$OGGMHUB_ENV_CACHE``, else ``~/.cache/oggmhub/envs``."""
    return Path(os.environ.get(ENV_CACHE_ENV) or Path.home() / ".cache" / "oggmhub" / "envs")


def _say(progress, line, percent=None):
    if progress is not None:
        progress(line if isinstance(line, Step) else Step(line, percent))


def build_local_env(env_name, catalog, root_dir=None, progress=None, context=None, shared=False):
    """Build (or reuse) the virtualenv of catalog environment ``env_name``; its path.

    ``progress`` gets one line at a time (for the spawn page). ``context`` overrides the
    build context folder (default: ``images/<env_name>`` beside the catalog). ``shared``:
    runnable by every system account (see the module's docstring).
    Raises :class:`LocalEnvError` when the machine lacks something the environment needs.
    """
    try:
        context = images.context_dir(env_name, catalog, context)
    except images.ImageError as e:
        raise LocalEnvError(str(e)) from None
    root = (Path(root_dir) if root_dir else default_root()).absolute()
    root.mkdir(parents=True, exist_ok=True)
    if shared:
        from oggmhub.backends.local.file_modes import describe_blocked

        root.chmod(0o755)
        problem = describe_blocked(root, f"the environments' folder {root}", "c.LocalEnvSpawner.env_dir or $OGGMHUB_ENV_CACHE")
        if problem:
            raise LocalEnvError(problem)
    context_hash = images.context_hash(context)
    # one folder per version: a rebuild never pulls an environment from under a running server
    venv = root / f"{env_name}-{context_hash[:12]}"
    python = _pick_python(env_name, context, shared)
    wanted = {"context_hash": context_hash, "python": python.version, "executable": python.executable}
    if _marker(venv) == wanted and _helpers_current(venv):
        _say(progress, f"environment {env_name}: ready ({venv})")
        return venv
    _say(progress, f"environment {env_name}: waiting for the build lock")
    with _locked(root / f".{env_name}.lock"):
        if _marker(venv) == wanted:  # built already (maybe by another caller while we waited)
            _update_helpers(env_name, venv, progress)
            _say(progress, f"environment {env_name}: ready ({venv})")
            return venv
        python.check()
        _check_apt(env_name, context)
        _say(progress, f"Building environment {env_name} (the first start of it; later ones take seconds)", 2)
        if venv.exists():
            shutil.rmtree(venv)
        try:
            _build(env_name, context, venv, root, progress, python)
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)  # nothing half-built is left behind
            raise
        (venv / MARKER).write_text(json.dumps(wanted, indent=1) + "\n")
        (venv / HELPERS_MARKER).write_text(images.package_hash() + "\n")
        if shared:
            from oggmhub.backends.local.file_modes import publish_tree

            publish_tree(venv)
    _say(progress, f"environment {env_name}: ready ({venv})", build_steps.DONE)
    return venv


def _helpers_current(venv):
    try:
        return (venv / HELPERS_MARKER).read_text().strip() == images.package_hash()
    except OSError:
        return False


def _update_helpers(env_name, venv, progress):
    """Reinstall oggmhub's wheel (only that) where the environment has older helpers than
    the hub's, e.g. after the hub was updated from git without a version change."""
    if _helpers_current(venv):
        return
    _say(progress, f"environment {env_name}: updating oggmhub's helpers")
    with tempfile.TemporaryDirectory(prefix="oggmhub-wheel-") as tmp:
        try:
            wheel = images.build_wheel(tmp)
        except images.ImageError as e:
            raise LocalEnvError(f"environment {env_name!r}: {e}") from None
        rc, out = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--force-reinstall",
                        "--no-input", "--disable-pip-version-check", str(wheel)], None, "pip")
    if rc:
        raise LocalEnvError(f"environment {env_name!r}: could not update oggmhub's helpers: {out[-1:]}")
    (venv / HELPERS_MARKER).write_text(images.package_hash() + "\n")


def _marker(venv):
    try:
        return json.loads((venv / MARKER).read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def _locked(path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _Python:
    """The interpreter an environment's venv is made with, or why there is none."""

    def __init__(self, executable, version, problem=None):
        self.executable, self.version, self.problem = executable, version, problem

    def check(self):
        if self.problem:
            raise LocalEnvError(self.problem)


def runnable_by_all(executable):
    """Whether every account can run ``executable`` (each folder to it o+x, the file o+x)."""
    from oggmhub.backends.local.file_modes import blocked_for_others

    real = os.path.realpath(executable)
    try:
        return os.stat(real).st_mode & 0o001 and blocked_for_others(os.path.dirname(real)) is None
    except OSError:
        return False


def _pick_python(env_name, context, shared=False):
    runtime = context / "runtime.txt"
    # the interpreter itself, not the hub's virtualenv around it: a second clone of the hub
    # (another .venv) reuses the environments the first one built
    here = _Python(getattr(sys, "_base_executable", None) or sys.executable, sys.version)
    wanted = runtime.read_text().strip() if runtime.is_file() else None
    have = f"python-{sys.version_info.major}.{sys.version_info.minor}"
    if (wanted is None or wanted == have) and (not shared or runnable_by_all(here.executable)):
        return here
    minor = (wanted or have).removeprefix("python-")
    candidates = (shutil.which(f"python{minor}"), _uv_find(minor))
    if shared:  # the system's own interpreters first: pyenv's and uv's may sit under /root
        candidates = [c for c in (f"/usr/bin/python{minor}", f"/usr/local/bin/python{minor}", "/usr/bin/python3",
                                  *candidates) if c and os.path.exists(c) and runnable_by_all(c)]
    for candidate in candidates:
        if candidate:
            version = subprocess.run([candidate, "-c", "import sys; print(sys.version)"],
                                     capture_output=True, text=True).stdout.strip()
            if version.startswith(minor + "."):
                return _Python(candidate, version)
    if shared:
        return _Python(None, None, (
            f"environment {env_name!r} needs a Python {minor} that every user's system account can run "
            f"(the hub's {here.executable} is not: a folder on its way is closed to other users), and none "
            f"was found in /usr/bin or /usr/local/bin; install your distribution's python{minor} "
            f"(e.g. apt-get install python{minor}) and restart the hub"))
    return _Python(None, None, (
        f"environment {env_name!r} needs Python {minor} ({runtime}), but the hub runs "
        f"{sys.version.split()[0]} ({sys.executable}) and no python{minor} was found; install one "
        f"(e.g. `uv python install {minor}`, or your distribution's python{minor}-venv) and restart the hub"))


def _uv_find(minor):
    uv = build_steps.uv_binary()
    if not uv:
        return None
    found = subprocess.run([uv, "python", "find", "--no-python-downloads", minor], capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def apt_packages(context):
    """The Debian packages an environment's ``apt.txt`` lists."""
    path = Path(context) / "apt.txt"
    if not path.is_file():
        return []
    return [w for line in path.read_text().splitlines() for w in line.split("#", 1)[0].split()]


def missing_apt_packages(packages):
    """Those of ``packages`` that dpkg does not report installed (all of them without dpkg)."""
    if not packages:
        return []
    if not shutil.which("dpkg-query"):
        return list(packages)
    missing = []
    for pkg in packages:
        result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if result.returncode or "install ok installed" not in result.stdout:
            missing.append(pkg)
    return missing


def lacking_system_packages(env_name, context):
    """One sentence naming the Debian packages of ``apt.txt`` that this machine lacks and
    the command that installs them; None when nothing is missing."""
    missing = missing_apt_packages(apt_packages(context))
    if not missing:
        return None
    return (f"environment {env_name!r} needs Debian packages this machine lacks "
            f"({Path(context) / 'apt.txt'}): {', '.join(missing)}. The hub's administrator "
            f"installs them with: apt-get install -y {' '.join(missing)}")


def environments_lacking_packages(catalog):
    """For the hub's start-up: one sentence per catalog environment whose Debian packages
    are missing (its servers cannot start until they are installed)."""
    found = []
    for env_name in catalog.environments:
        try:
            context = images.context_dir(env_name, catalog)
        except images.ImageError:
            continue  # said when the environment is built
        line = lacking_system_packages(env_name, context)
        if line:
            found.append(line)
    return found


def _check_apt(env_name, context):
    line = lacking_system_packages(env_name, context)
    if line:
        raise LocalEnvError(line)


def _run(cmd, progress, what, log=None, percent=None, **kwargs):
    """Run ``cmd``, passing its output to ``progress`` (and ``log``) line by line; (returncode, output)."""
    lines = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs) as proc:
        for line in proc.stdout:
            line = line.rstrip()
            lines.append(line)
            if log is not None:
                log(line)
            if line:
                _say(progress, f"{what}: {line[:160]}", percent)
    return proc.returncode, lines


def log_path(root, env_name):
    """Where the last build of ``env_name`` under ``root`` wrote its full output."""
    return Path(root) / "logs" / f"{env_name}.log"


def _build(env_name, context, venv, root, progress, python):
    logfile = log_path(root, env_name)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "w") as f:
        def log(line):
            f.write(line + "\n")
            f.flush()

        log(f"# build of environment {env_name} from {context} into {venv} with Python {python.version}")
        _say(progress, f"Creating the virtualenv (Python {python.version.split()[0]})", 3)
        uv = build_steps.uv_binary()
        # uv makes the venv (with pip, which postBuild and users' `pip install --user` need) in a
        # second where `python -m venv` takes tens of seconds on a loaded machine
        made = subprocess.run(
            [uv, "venv", "--seed", "--quiet", "--python", python.executable, str(venv)] if uv
            else [python.executable, "-m", "venv", str(venv)],
            capture_output=True, text=True, env={**os.environ, "UV_SYSTEM_CERTS": os.environ.get("UV_SYSTEM_CERTS", "1")})
        log(made.stdout + made.stderr)
        if made.returncode:
            raise LocalEnvError(f"environment {env_name!r}: `{python.executable} -m venv` failed: "
                                f"{(made.stderr.strip().splitlines() or ['no output'])[-1]} (full build log: {logfile})")
        _say(progress, "Packing oggmhub's notebook helpers (a wheel) for the environment", 4)
        try:
            with images.staged_context(context) as stage:
                _install(env_name, context, stage, venv, root, progress, python, log, logfile)
        except images.ImageError as e:  # staging: oggmhub's wheel could not be built
            raise LocalEnvError(f"environment {env_name!r}: {e}") from None
    if not (venv / "bin" / "jupyterhub-singleuser").exists():
        raise LocalEnvError(
            f"environment {env_name!r} has no jupyterhub-singleuser: "
            f"{context / 'requirements.txt'} must pin jupyterhub (and jupyterlab)"
        )
    allow_user_site(venv)


USER_SITE_CUSTOMIZE = '''"""oggmhub: this environment sees its own packages and the user's, not the hub's.

pip refuses `pip install --user` in a virtualenv that hides the system site-packages, so
the venv is marked as including them (pyvenv.cfg); they are taken off sys.path again
here, leaving the environment's packages and the user's ~/.local ones (which live in
the persistent home and so survive restarts and environment switches).
"""
import site
import sys

_base = {p for p in site.getsitepackages() if not p.startswith(sys.prefix)}
sys.path[:] = [p for p in sys.path if p not in _base]
'''


def allow_user_site(venv):
    """Let users ``pip install --user`` into their home, without exposing the hub's packages.

    Called once the environment's own packages are installed (with the venv still
    isolated, so pip installed every requirement into it).
    """
    cfg = venv / "pyvenv.cfg"
    lines = [
        "include-system-site-packages = true" if line.startswith("include-system-site-packages") else line
        for line in cfg.read_text().splitlines()
    ]
    cfg.write_text("\n".join(lines) + "\n")
    [site_packages] = (venv / "lib").glob("python3*/site-packages")
    (site_packages / "sitecustomize.py").write_text(USER_SITE_CUSTOMIZE)


def _install(env_name, context, stage, venv, root, progress, python, log, logfile):
    rc, out = build_steps.install_requirements(
        env_name, venv, stage / "requirements.txt", stage, lambda step: _say(progress, step), log)
    if rc:
        why = build_steps.summarize_failure(out, python.version.split()[0])
        raise LocalEnvError(
            f"environment {env_name!r} could not be built: {why} "
            f"(installing {context / 'requirements.txt'}; full build log: {logfile})"
        )
    if (stage / "postBuild").is_file():
        _say(progress, f"Running {env_name}'s postBuild", build_steps.POSTBUILD)
        _post_build(env_name, context, stage, venv, root, progress, log, logfile)


def _post_build(env_name, context, stage, venv, root, progress, log=None, logfile=None):
    downloads = Path(os.environ.get("OGGMHUB_DOWNLOADS") or root / "downloads")
    downloads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="oggmhub-postbuild-home-") as home:
        env = {
            **os.environ,
            "HOME": home,  # whatever postBuild registers "per user" stays out of the real home
            "NB_PYTHON_PREFIX": str(venv),
            "KERNEL_PYTHON_PREFIX": str(venv),
            "REPO_DIR": str(stage),
            "OGGMHUB_DOWNLOADS": str(downloads),
            "OGGMHUB_LOCAL_ENV": "1",
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(venv),
        }
        rc, out = _run(["bash", str(stage / "postBuild")], progress, "postBuild", log=log,
                       percent=build_steps.POSTBUILD + 5, cwd=stage, env=env)
    if rc == 0:
        return
    needs = [line.split("oggmhub-missing:", 1)[1].strip() for line in out if "oggmhub-missing:" in line]
    if needs:
        raise LocalEnvError(
            f"environment {env_name!r} cannot be built on this machine: "
            + "; ".join(needs)
            + f" (downloads can be placed in {downloads} by hand)"
        )
    last = next((line.strip() for line in reversed(out) if line.strip()), "no output")[:300]
    raise LocalEnvError(f"environment {env_name!r}: {context / 'postBuild'} failed (exit {rc}): {last} "
                        f"(full build log: {logfile})")
