"""The tasks service's pieces tests share: a runner outside the service, an images folder
with a slow task (to cancel), a real small volume, a user's tasks client."""

import logging
import os

from oggmhub.catalog import load_catalog
from oggmhub.session import tasks as session_tasks
from oggmhub.user_folders import home_path
from support.paths import CATALOG, REPO

REPO = str(REPO)

SLEEP_XML = """<?xml version="1.0" encoding="utf-8"?>
<executable><category>Testing</category><title>Sleep</title><description>Copy a file, slowly</description>
<parameters><label>IO</label><description>io</description>
<double><name>seconds</name><longflag>--seconds</longflag><label>Seconds</label><description>s</description>
<default>30</default></double>
<file><name>inputFile</name><label>In</label><channel>input</channel><index>0</index><description>i</description></file>
<file><name>outputFile</name><label>Out</label><channel>output</channel><index>1</index><description>o</description></file>
</parameters></executable>
"""
SLEEP_PY = """import shutil, sys, time
args = sys.argv[1:]
seconds = float(args[args.index("--seconds") + 1]) if "--seconds" in args else 30
time.sleep(seconds)
shutil.copyfile(args[-2], args[-1])
"""


def images_with_a_slow_task(folder):
    """An images folder under ``folder``: the repository's, the Slicer environment's tasks
    plus Sleep (a slow task, to cancel)."""
    images = folder / "images"
    (images / "slicer" / "tasks").mkdir(parents=True)
    for name in os.listdir(os.path.join(REPO, "images", "slicer", "tasks")):
        os.symlink(os.path.join(REPO, "images", "slicer", "tasks", name), images / "slicer" / "tasks" / name)
    (images / "slicer" / "tasks" / "Sleep.xml").write_text(SLEEP_XML)
    (images / "slicer" / "tasks" / "Sleep.py").write_text(SLEEP_PY)
    for env in ("oggm", "fiji"):
        os.symlink(os.path.join(REPO, "images", env), images / env)
    return images


def volume_bytes(i):
    """A real small NRRD volume (6x12x12, a bright box in a background of 10 + ``i``)."""
    import tempfile

    import numpy as np
    import SimpleITK as sitk

    a = np.full((6, 12, 12), 10 + i, dtype="int16")
    a[1:5, 3:9, 3:9] = 200
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "v.nrrd")
        sitk.WriteImage(sitk.GetImageFromArray(a), path)
        return open(path, "rb").read()


def tasks_client(hub, name):
    """A new hub user ``name``'s tasks client (a token scoped to the tasks service), with
    ``home`` (their home folder) and ``session`` (their logged-in browser-like session)."""
    session = hub.new_user(name)
    r = hub.api(session, "POST", f"/users/{name}/tokens", json={"scopes": ["access:services!service=tasks"], "note": "t"})
    assert r.status_code == 201, r.text
    client = session_tasks.Client(hub.tasks_url, r.json()["token"])
    client.home = home_path(os.path.join(hub.data_dir, "homes"), name)
    os.makedirs(client.home, exist_ok=True)
    client.session = session
    return client


def make_runner(tasks, settings, tmp_path):
    """A LocalRunner for ``tasks`` with ``settings``, its run records under ``tmp_path``."""
    from oggmhub.tasks.cluster import UserSlots
    from oggmhub.tasks.local_runner import LocalRunner
    from oggmhub.tasks.runs import RunStore

    catalog = load_catalog(str(CATALOG))
    return LocalRunner(settings, tasks, catalog, RunStore(str(tmp_path / "runs")), UserSlots(), logging.getLogger("t"))
