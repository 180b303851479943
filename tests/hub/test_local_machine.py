"""The picker fits the machine on the local backend: sizes it cannot honour and GPU variants
with no GPU present are left out of the picker, refused by the API with the reason, and
listed when the hub starts. The hub here is told it runs on a 2-CPU machine without GPU
($OGGMHUB_MACHINE), so the test means the same on any CI machine."""

import os

import pytest

from oggmhub.backends.local import machine
from oggmhub.backends.local.environments import apt_packages, missing_apt_packages
from oggmhub.choice import ChoiceError, resolve_choice
from support.local_hub import REPO, LocalHub

GIB = 1024**3
SMALL_MACHINE = "cpus=2,memory=64Gi,gpus=0"


def test_rules(catalog):
    oggm = catalog.environments["oggm"]
    two = machine.Machine(cpus=2, memory=64 * GIB, gpus=0)
    assert machine.size_problem(oggm, oggm.sizes["small"], two) is None
    assert "promises 4 CPUs; this machine has 2 CPUs" in machine.size_problem(oggm, oggm.sizes["large"], two)
    one = machine.Machine(cpus=1, memory=3 * GIB, gpus=0)
    # the default size runs capped by the machine's CPUs, but never without its memory guarantee
    assert machine.size_problem(oggm, oggm.sizes["small"], machine.Machine(cpus=1, memory=64 * GIB, gpus=0)) is None
    assert "guarantees 4 GiB of memory" in machine.size_problem(oggm, oggm.sizes["medium"], one)
    slicer = catalog.environments["slicer"]
    with pytest.raises(ChoiceError, match="needs 1 NVIDIA GPU"):
        machine.check_choice(resolve_choice(catalog, {"profile": "slicer", "gpu": "t4"}), two)
    assert machine.gpu_problem(slicer, slicer.gpus["t4"], machine.Machine(2, 64 * GIB, 1)) is None
    profiles = machine.fit_profiles(
        [{"slug": "oggm", "profile_options": {"size": {"choices": {
            "small": {"default": False}, "large": {"default": True}}}}}], catalog, two)
    assert profiles[0]["profile_options"]["size"]["choices"] == {"small": {"default": True}}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    hub = LocalHub(tmp_path_factory.mktemp("hub") / "data", env={machine.MACHINE_ENV: SMALL_MACHINE}).start()
    yield hub
    hub.stop(servers=True)


def test_picker_and_api_fit_the_machine(hub):
    session = hub.new_user("carla", "basal-slide-99")
    form = session.get(f"{hub.url}/hub/spawn").text
    assert 'value="small"' in form and 'value="medium"' in form
    assert 'value="large"' not in form, "a size promising 4 CPUs on a 2-CPU machine"
    assert 'value="t4"' not in form, "a GPU variant on a machine without GPU"
    for body, reason in (({"profile": "oggm", "size": "large"}, "OGGM Large (4 CPU, 16 GB) promises 4 CPUs; this machine has 2 CPUs"),
                         ({"profile": "slicer", "gpu": "t4"}, "3D Slicer with 1 NVIDIA T4 needs 1 NVIDIA GPU(s)")):
        r = hub.api(session, "POST", "/users/carla/server", json=body)
        assert r.status_code == 400, r.text
        assert reason in r.json()["message"]
        assert hub.api(session, "GET", "/users/carla").json()["servers"] == {}
    log = hub.log()
    assert "oggmhub: not offered here: OGGM Large (4 CPU, 16 GB) promises 4 CPUs" in log
    assert "oggmhub: not offered here: Fiji with 1 NVIDIA T4 needs 1 NVIDIA GPU(s)" in log


def test_start_up_names_the_debian_packages_an_environment_lacks(hub, catalog):
    """An environment whose apt.txt this machine lacks is named at start-up with the
    install command, before a user's start fails on it (CI has Fiji's, not Slicer's)."""
    log = hub.log()
    for env in catalog.environments:
        lacking = missing_apt_packages(apt_packages(os.path.join(REPO, "images", env)))
        said = f"oggmhub: environment {env!r} needs Debian packages this machine lacks"
        if lacking:
            assert f"{said} (" in log and f"installs them with: apt-get install -y {' '.join(lacking)}\n" in log
        else:
            assert said not in log
