"""An environment's tutorials in the user's home, merged the way nbgitpuller merges:

* a tutorial the user has not got yet is added;
* one the user has not changed is updated when the tutorials change;
* one the user has edited is never overwritten (nor is any other file of theirs);
* one the user deleted comes back (as nbgitpuller restores deleted files).

Which version the user was given last is remembered by its SHA-256 in
``<dest>/.oggmhub-tutorials.json``; a file whose content still has that hash is unmodified.
The local hub calls :func:`merge` at every start, from ``notebooks/<env>-*.ipynb``
into ``~/tutorials/<env>/``, and says so on the spawn page. In an image (Kubernetes,
Binder) the environment's ``start`` script does it, from the copy oggmhub's wheel installs
in ``$NB_PYTHON_PREFIX/share/oggmhub/tutorials``::

    python -m oggmhub.session.tutorials start     # for $OGGMHUB_ENVIRONMENT, into ~/tutorials/<env>

``start`` does nothing when ``$OGGMHUB_TUTORIALS`` is ``hub`` (the local hub merged
them already, perhaps from a folder of the admin's) and never fails a session's start.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field

STATE = ".oggmhub-tutorials.json"
FOLDER = "tutorials"  # in the home: tutorials/<env>/
BY_HUB = "hub"  # $OGGMHUB_TUTORIALS: the hub merged them; the start script leaves them


@dataclass
class MergeReport:
    added: list = field(default_factory=list)
    updated: list = field(default_factory=list)
    kept: list = field(default_factory=list)  # edited by the user: left as they are
    unchanged: list = field(default_factory=list)

    def summary(self):
        parts = [f"{len(v)} {k}" for k, v in (("added", self.added), ("updated", self.updated),
                                                ("kept as you edited them", self.kept)) if v]
        return ", ".join(parts) or "up to date"


def _sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tutorial_files(source, env=None):
    """Relative paths of the tutorials in ``source``: every file below it, or, with
    ``env``, the files named ``<env>-*`` at its top (the repository's ``notebooks/``)."""
    if not os.path.isdir(source):
        return []
    if env:
        return sorted(n for n in os.listdir(source)
                      if n.startswith(f"{env}-") and os.path.isfile(os.path.join(source, n)))
    out = []
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                out.append(os.path.relpath(os.path.join(dirpath, name), source))
    return out


def _copy(src, dst):
    """Write ``dst`` whole or not at all (a crash never leaves half a notebook)."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".oggmhub-", dir=os.path.dirname(dst))
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    except BaseException:
        os.unlink(tmp)
        raise


def merge(source, dest, env=None):
    """Merge the tutorials in ``source`` into ``dest``; a :class:`MergeReport`."""
    report = MergeReport()
    files = tutorial_files(source, env)
    if not files:
        return report
    os.makedirs(dest, exist_ok=True)
    state_path = os.path.join(dest, STATE)
    try:
        with open(state_path, encoding="utf-8") as f:
            given = dict(json.load(f))
    except (OSError, ValueError):
        given = {}
    for rel in files:
        src, dst = os.path.join(source, rel), os.path.join(dest, rel)
        new = _sha(src)
        if not os.path.lexists(dst):
            _copy(src, dst)
            (report.updated if rel in given else report.added).append(rel)
            given[rel] = new
            continue
        if os.path.islink(dst) or not os.path.isfile(dst):
            report.kept.append(rel)  # something of the user's own: never replaced
            continue
        have = _sha(dst)
        if have == new:
            report.unchanged.append(rel)
            given[rel] = new
        elif have == given.get(rel):  # unmodified since we gave it: update
            _copy(src, dst)
            report.updated.append(rel)
            given[rel] = new
        else:  # edited by the user (or theirs from before): keep it
            report.kept.append(rel)
    fd, tmp = tempfile.mkstemp(prefix=".oggmhub-", dir=dest)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(given, f, indent=1, sort_keys=True)
    os.replace(tmp, state_path)
    return report


def environment_name(environ=None):
    """The session's environment (``$OGGMHUB_ENVIRONMENT``) if it names a folder safely, else None."""
    from oggmhub.session import env as session_vars

    env = (os.environ if environ is None else environ).get(session_vars.ENVIRONMENT, "")
    return env if env and "/" not in env and not env.startswith(".") else None


def installed_tutorials(prefix=None):
    """Where oggmhub's wheel put the tutorials in an environment (``<prefix>/share/oggmhub/tutorials``)."""
    return os.path.join(prefix or sys.prefix, "share", "oggmhub", "tutorials")


def start(environ=None, prefix=None):
    """At a session's start (the image's ``start`` script): this environment's tutorials
    from the wheel's copy into ``~/tutorials/<env>``. Returns a line for the log; never raises."""
    from oggmhub.session import env as session_vars

    environ = os.environ if environ is None else environ
    if environ.get(session_vars.TUTORIALS) == BY_HUB:
        return "tutorials: merged by the hub"
    env = environment_name(environ)
    if env is None:
        return f"tutorials: ${session_vars.ENVIRONMENT} is not set; none merged"
    home = environ.get("HOME") or os.path.expanduser("~")
    dest = os.path.join(home, FOLDER, env)
    try:
        report = merge(installed_tutorials(prefix or environ.get("NB_PYTHON_PREFIX")), dest, env)
    except OSError as e:  # a full or read-only home: the session starts all the same
        return f"tutorials: not merged into {dest}: {e}"
    return f"tutorials in ~/{FOLDER}/{env}: {report.summary()}"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["start"]:
        print(start(), file=sys.stderr)
        return 0
    if len(argv) != 3 or argv[0] != "merge":
        print("usage: python -m oggmhub.session.tutorials merge SOURCE DEST | start", file=sys.stderr)
        return 2
    report = merge(argv[1], argv[2])
    print(f"tutorials in {argv[2]}: {report.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
