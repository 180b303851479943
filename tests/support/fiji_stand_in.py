"""The Fiji environment with Debian's ImageJ standing in for Fiji (see TESTING.md).

Fiji itself is a download from downloads.imagej.net, which this machine cannot reach, so
``images/fiji/postBuild`` stops with ``oggmhub-missing:`` here. The stand-in context is
``images/fiji/`` unchanged (its pinned requirements, its ``apt.txt`` desktop packages,
its ``start`` script and menu entry), except that its postBuild installs oggmhub's wheel
and puts a Fiji launcher that runs Debian's ``imagej`` where Fiji's would be. What is
*not* covered by it: Fiji's bundle, its JDK and pyimagej on Fiji (those need the download).
"""

from __future__ import annotations

import os
import shutil

from support import paths as _paths

REPO = str(_paths.REPO)

STAND_IN_POSTBUILD = r"""#!/bin/bash
# TEST STAND-IN for images/fiji/postBuild (tests/fiji_stand_in.py says why)
set -euo pipefail
: "${NB_PYTHON_PREFIX:?NB_PYTHON_PREFIX must name the environment}"
shopt -s nullglob
wheels=(oggmhub-dist/oggmhub-*.whl)
"${NB_PYTHON_PREFIX}/bin/python" -m pip install --no-cache-dir --no-deps "${wheels[@]}"
"${NB_PYTHON_PREFIX}/bin/python" -m oggmhub.session.labsettings "${NB_PYTHON_PREFIX}"
imagej=/usr/bin/imagej  # not `command -v`: pyimagej puts a CLI of that name in the venv
[ -x "$imagej" ] || { echo "oggmhub-missing: Debian's imagej (apt-get install imagej)" >&2; exit 3; }
fiji="${NB_PYTHON_PREFIX}/opt/fiji"
mkdir -p "$fiji"
printf '#!/bin/sh\n# stand-in: Debian ImageJ in place of Fiji\nexec %s "$@"\n' "$imagej" > "$fiji/fiji-linux-x64"
chmod +x "$fiji/fiji-linux-x64"
mkdir -p "${NB_PYTHON_PREFIX}/share/applications"
sed "s|@FIJI@|$fiji/fiji-linux-x64|g" fiji.desktop > "${NB_PYTHON_PREFIX}/share/applications/fiji.desktop"
"""


def make_images_dir(dest, also=()):
    """``dest/fiji``: the stand-in Fiji context, and a link to the repository's context of
    each environment in ``also`` (unchanged: same hash, same cached build), and the
    repository's tutorials beside it (``../notebooks``, where the local hub finds them);
    returns ``dest`` (an images folder)."""
    os.makedirs(dest, exist_ok=True)
    notebooks = os.path.join(os.path.dirname(os.path.abspath(dest)), "notebooks")
    if not os.path.exists(notebooks):
        os.symlink(os.path.join(REPO, "notebooks"), notebooks)
    for name in also:
        os.symlink(os.path.join(REPO, "images", name), os.path.join(dest, name))
    context = os.path.join(dest, "fiji")
    shutil.copytree(os.path.join(REPO, "images", "fiji"), context)
    postbuild = os.path.join(context, "postBuild")
    with open(postbuild, "w") as f:
        f.write(STAND_IN_POSTBUILD)
    os.chmod(postbuild, 0o755)
    return str(dest)
