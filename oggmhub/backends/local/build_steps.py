"""An environment build in steps a user understands, and its failures in one sentence.

:func:`install_requirements` installs a context's pinned ``requirements.txt`` into a
virtualenv with uv (``uv pip install``; several times faster than pip on a cold cache),
turning uv's verbose output into progress steps with a percentage that advances
(resolving n/N, downloading n/M, installing), and every line into the build log. When it
fails, :func:`summarize_failure` names the real cause in one line ("soupsieve 4.1.2 needs
Python >= 3.11.5; this machine has 3.11.2") instead of a wall of installer output.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

# where each phase of a build sits on the spawn page's bar (0-100)
RESOLVE, DOWNLOAD, INSTALL, POSTBUILD, DONE = 5, 15, 70, 80, 95


class Step(str):
    """A progress line with the percentage of the build it stands for (``.percent``)."""

    percent = None

    def __new__(cls, text, percent=None):
        step = super().__new__(cls, text)
        step.percent = percent
        return step


def uv_binary():
    """uv's executable: the one installed with oggmhub (the ``uv`` package), else on PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def pinned_count(requirements):
    return sum(1 for line in open(requirements) if line.strip() and not line.lstrip().startswith(("#", "-")))


def _between(low, high, done, total):
    return low + (high - low) * min(done, total) / max(total, 1)


def install_requirements(env_name, venv, requirements, cwd, say, log):
    """Install ``requirements`` into ``venv``; returns (returncode, output lines).

    ``say(Step)`` gets the progress steps, ``log(line)`` every line of the installer."""
    uv = uv_binary()
    python = os.path.join(venv, "bin", "python")
    if uv is None:  # no uv: pip, with its lines as steps
        cmd = [python, "-m", "pip", "install", "--no-input", "--progress-bar", "off",
               "--disable-pip-version-check", "-r", str(requirements)]
    else:
        cmd = [uv, "pip", "install", "-v", "--python", python, "-r", str(requirements)]
    total = pinned_count(requirements)
    env = {**os.environ, "UV_CONCURRENT_DOWNLOADS": os.environ.get("UV_CONCURRENT_DOWNLOADS", "6"),
           "NO_COLOR": "1", "RUST_LOG": "", "UV_NO_PROGRESS": "1",
           "UV_SYSTEM_CERTS": os.environ.get("UV_SYSTEM_CERTS", "1")}  # the machine's CA store, as pip's
    resolved = downloads = started = 0
    say(Step(f"Resolving the {total} packages of {env_name}", RESOLVE))
    lines = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env) as proc:
        for line in proc.stdout:
            line = line.rstrip()
            lines.append(line)
            log(line)
            if uv is None:
                if line.startswith(("Collecting", "Installing collected")):
                    say(Step(line[:120], None))
                continue
            if " Selecting: " in line:
                resolved += 1
                if resolved % 10 == 0:
                    say(Step(f"Resolving packages: {min(resolved, total)}/{total}", _between(RESOLVE, DOWNLOAD, resolved, total)))
            elif "Identified uncached distribution" in line:
                downloads += 1
            elif line.startswith("Resolved "):
                say(Step(f"{line}; downloading {downloads} of them" if downloads else line, DOWNLOAD))
            elif "Sending fresh GET request for: " in line and line.endswith((".whl", ".tar.gz", ".zip")) \
                    and "/simple/" not in line:
                started += 1
                name = line.rsplit("/", 1)[-1].split("-", 2)
                say(Step(f"Downloading {started}/{max(downloads, started)}: {name[0]} {name[1] if len(name) > 1 else ''}".rstrip(),
                         _between(DOWNLOAD, INSTALL, started - 1, max(downloads, started))))
            elif line.startswith("Prepared "):
                say(Step(f"{line}; installing them", INSTALL))
            elif line.startswith("Installed "):
                say(Step(line, POSTBUILD))
    return proc.returncode, lines


_PYTHON_CAUSE = re.compile(
    r"current Python version \((?P<have>[^)]+)\) does not satisfy Python(?P<need>[<>=!~][^ ]*) and "
    r"(?P<pkg>[A-Za-z0-9_.\-]+)==(?P<version>[^ ]+) depends on")
_PIP_REQUIRES = re.compile(r"(?P<version>[^ ;]+) Requires-Python (?P<need>[<>=!~][^;\s]+)")
_PIP_NOT_FOUND = re.compile(r"No matching distribution found for (?P<pkg>[A-Za-z0-9_.\-]+)==(?P<version>\S+)")
_NOT_IN_REGISTRY = re.compile(r"Because (?P<pkg>\S+) was not found in the package registry")


def summarize_failure(lines, python_version):
    """One sentence naming why an install failed, from the installer's output ``lines``."""
    text = "\n".join(lines)
    m = _PYTHON_CAUSE.search(text)
    if m:
        return (f"{m['pkg']} {m['version']} needs Python {m['need'].replace('>=', '>= ')}; "
                f"this machine has {m['have']}")
    m = _PIP_NOT_FOUND.search(text)
    if m:
        for need in _PIP_REQUIRES.finditer(text):
            if need["version"] == m["version"]:
                return (f"{m['pkg']} {m['version']} needs Python {need['need'].replace('>=', '>= ')}; "
                        f"this machine has {python_version}")
        return f"{m['pkg']} {m['version']} is not on the package index (or the index cannot be reached)"
    m = _NOT_IN_REGISTRY.search(text)
    if m:
        return f"{m['pkg']} is not on the package index"
    for pattern, why in ((r"Failed to fetch|dns error|Connection refused|connect error|timed out|Network is unreachable",
                          "the package index (PyPI) could not be reached"),
                         (r"No space left on device", "the disk is full")):
        if re.search(pattern, text, re.IGNORECASE):
            return why
    errors = [line.strip() for line in lines if line.strip().lower().startswith(("error", "cause:", "caused by:"))]
    last = errors[-1] if errors else next((line.strip() for line in reversed(lines) if line.strip()), "no output")
    return last[:300]
