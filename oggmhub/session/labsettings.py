"""JupyterLab defaults for every environment: no news feed, no update checks.

A hub's users should not be asked on their first login whether they want Jupyter's news,
nor have JupyterLab call the internet for news and releases (many hubs cannot reach it,
and the hub's admins, not its users, update the environments). The defaults go into the
environment's ``share/jupyter/lab/settings/overrides.json`` (JupyterLab's system-wide
defaults), merged into what is there: a value an admin already set is kept, and users
can still change them in Settings.

Every environment's postBuild runs ``python -m oggmhub.session.labsettings "$NB_PYTHON_PREFIX"``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

DEFAULTS = {
    "@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"},
}


class LabSettingsError(Exception):
    """An overrides.json that cannot be merged into; the message names the file."""


def overrides_path(prefix):
    return Path(prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"


def install(prefix, defaults=DEFAULTS):
    """Merge ``defaults`` into the environment's overrides.json (kept values win); its path."""
    path = overrides_path(prefix)
    settings = {}
    if path.exists():
        try:
            settings = json.loads(path.read_text() or "{}")
        except ValueError as e:
            raise LabSettingsError(f"{path}: not valid JSON ({e}); fix or remove it, then run this again") from None
        if not isinstance(settings, dict):
            raise LabSettingsError(f"{path}: must hold a JSON object of plugin settings, not {type(settings).__name__}")
    for plugin, values in defaults.items():
        current = settings.setdefault(plugin, {})
        if not isinstance(current, dict):
            raise LabSettingsError(f"{path}: {plugin!r} must be an object of settings")
        for key, value in values.items():
            current.setdefault(key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        json.dump(settings, f, indent=2)
        f.write("\n")
    os.chmod(f.name, 0o644)
    os.replace(f.name, path)  # never a half-written file
    return path


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1 or argv[:1] in (["-h"], ["--help"]):
        print("usage: python -m oggmhub.session.labsettings [PREFIX]  (default: this Python's prefix)")
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    try:
        path = install(argv[0] if argv else sys.prefix)
    except (LabSettingsError, OSError) as e:
        print(f"oggmhub.session.labsettings: {e}", file=sys.stderr)
        return 1
    print(f"JupyterLab defaults (no news, no update checks) in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
