"""Where the local hub keeps home images, and how one goes for good (a cohort's deletion).

``<data dir>/home-images/<folder name>.img``, loop-mounted at ``<data dir>/homes/<folder name>``
(:mod:`oggmhub.backends.local.home_images` makes and mounts them).
"""

from __future__ import annotations

import os
import subprocess

IMAGES = "home-images"


def image_path(data_dir, folder):
    return os.path.join(data_dir, IMAGES, folder + ".img")


def image_of_home(home):
    """The image file of ``<data dir>/homes/<folder>``."""
    homes_dir = os.path.dirname(os.path.abspath(home))
    return image_path(os.path.dirname(homes_dir), os.path.basename(home))


def release(home):
    """Unmount ``home`` if its image is mounted there; the image's path (None if it has none).
    Raises OSError naming the home when it is in use."""
    if os.path.ismount(home):
        done = subprocess.run(["umount", home], capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(f"{home} is in use and cannot be unmounted: {done.stderr.strip()}")
    image = image_of_home(home)
    return image if os.path.exists(image) else None
