"""Which tasks an environment offers: the image lists them.

An environment's build context (``images/<env>/``) ships its tools in ``tasks/``; in the
image they are installed where ``OGGMHUB_TASKS_DIR`` says. Like slicer_cli_web's
``--list_cli``, ``python -m oggmhub.tasks.discovery DIR`` prints what a folder offers as
JSON. A folder holds:

- ``NAME.xml`` beside ``NAME.py`` (or an executable ``NAME``): a Slicer Execution Model
  CLI, described by the XML (what ``NAME --xml`` prints);
- an executable without an XML that answers ``--xml`` (Slicer's own ``cli-modules``,
  found where Slicer is installed: ``$SLICER_HOME/lib/Slicer-*/cli-modules``);
- ``NAME.ijm``, ``NAME.groovy``, ``NAME.js`` or ``NAME.bsh`` with ``#@`` parameter lines: a
  Fiji script.

A task is named ``<environment>/<NAME>``.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from dataclasses import dataclass

from oggmhub.tasks.spec import SpecError, TaskSpec, parse_script, parse_slicer_xml

SCRIPT_SUFFIXES = (".ijm", ".groovy", ".js", ".bsh")


@dataclass
class Task:
    environment: str
    spec: TaskSpec
    path: str  # the executable (a CLI) or the script
    xml_path: str = ""

    @property
    def id(self):
        return f"{self.environment}/{self.spec.name}"

    def to_json(self):
        return {"id": self.id, "environment": self.environment, **self.spec.to_json()}


def _is_executable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _cli_xml(path, timeout=30):
    result = subprocess.run([path, "--xml"], capture_output=True, text=True, timeout=timeout)
    if result.returncode or "<executable" not in result.stdout:
        raise SpecError(f"{path} --xml printed no Slicer Execution Model description")
    return result.stdout[result.stdout.index("<"):]


def discover_dir(environment, folder, problems=None, probe_executables=False):
    """The tasks in ``folder``; unreadable ones are skipped and described in ``problems``."""
    found = {}
    if not folder or not os.path.isdir(folder):
        return found
    problems = [] if problems is None else problems
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        stem, suffix = os.path.splitext(entry)
        try:
            if suffix == ".xml":
                impl = next((c for c in (os.path.join(folder, stem + ".py"), os.path.join(folder, stem))
                             if os.path.isfile(c)), None)
                if impl is None:
                    problems.append(f"{path}: no {stem}.py or {stem} beside it to run")
                    continue
                with open(path) as f:
                    spec = parse_slicer_xml(f.read(), stem)
                found[stem] = Task(environment, spec, impl, path)
            elif suffix in SCRIPT_SUFFIXES:
                with open(path) as f:
                    found[stem] = Task(environment, parse_script(f.read(), stem), path)
            elif probe_executables and not suffix and _is_executable(path) and stem not in found:
                found[stem] = Task(environment, parse_slicer_xml(_cli_xml(path), stem), path)
        except (SpecError, OSError, subprocess.SubprocessError) as e:
            problems.append(str(e))
    return found


def slicer_cli_dirs(slicer_home):
    """Slicer's own CLI module folders in an installation."""
    if not slicer_home:
        return []
    return sorted(glob.glob(os.path.join(slicer_home, "lib", "Slicer-*", "cli-modules")))


def discover(catalog, images_dir, problems=None, slicer_home=None):
    """Every task of every catalog environment, by id (``env/NAME``)."""
    tasks = {}
    for name in catalog.environments:
        folders = [os.path.join(images_dir, name, "tasks")]
        if name == "slicer":
            folders += slicer_cli_dirs(slicer_home or os.environ.get("SLICER_HOME"))
        for i, folder in enumerate(folders):
            for task in discover_dir(name, folder, problems, probe_executables=i > 0).values():
                tasks.setdefault(task.id, task)
    return tasks


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m oggmhub.tasks.discovery DIR\n\nPrints the tasks in DIR as JSON "
              "(like slicer_cli_web's --list_cli).", file=sys.stderr)
        return 2
    problems = []
    tasks = discover_dir(os.path.basename(os.path.dirname(os.path.abspath(argv[0]))), argv[0], problems, True)
    print(json.dumps({"tasks": [t.to_json() for t in tasks.values()], "problems": problems}, indent=1))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
