"""Cohort rules in OGGMHubSpawner against the Kubernetes API emulator (kmock + test kubelet):
a member gets only the cohort's environments and sizes, is refused outside the window
before anything is created, and the materials are pulled by an unprivileged init container."""

from datetime import timedelta
from types import SimpleNamespace

import kubernetes_validate
import pytest
from tornado import web

from oggmhub.catalog import load_catalog
from oggmhub.cohorts.model import (
    now_utc,
)
from oggmhub.cohorts.validation import validate_spec
from support.kube_harness import hub_start
from support.kube_harness.oggmhub import oggmhub_spawner
from support.paths import CATALOG

NS = "default"
NOW = now_utc()


pytestmark = pytest.mark.usefixtures("kubelet")  # conftest's api, with pods that start


def member(name, **spec):
    cohort = validate_spec({
        "name": "glaciers", "start": (NOW - timedelta(hours=1)).isoformat(), "end": (NOW + timedelta(days=1)).isoformat(),
        "environments": ["oggm=small,medium"], "materials": {"repo": "https://example.org/tutorials.git", "branch": "v1"},
        "limits": {"dask_workers": 3}, **spec,
    }, load_catalog(str(CATALOG)))
    spawner = oggmhub_spawner(name, k8s_api_request_timeout=1, k8s_api_request_retry_timeout=2, start_timeout=10)
    spawner.user.groups = [SimpleNamespace(name=cohort.group, properties=cohort.to_properties())]
    return spawner, cohort


spawn = hub_start  # what JupyterHub does to start a server


async def test_a_member_starts_only_the_cohorts_choices_with_the_materials_and_limits(api):
    spawner, cohort = member("ada")
    assert [p["slug"] for p in spawner.picker_profile_list()] == ["oggm"]
    await spawn(spawner, {})
    [pod] = api.objects("pods", NS)
    kubernetes_validate.validate(pod, "1.32", strict=True)
    notebook = next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")
    env = {e["name"]: e.get("value") for e in notebook["env"]}
    assert env["OGGMHUB_SIZE"] == "small" and env["OGGMHUB_MAX_DASK_WORKERS"] == "3"
    assert env["OGGMHUB_COHORTS"] == "glaciers"
    [init] = [c for c in pod["spec"]["initContainers"] if c["name"] == "materials"]
    assert init["image"] == notebook["image"]
    assert init["securityContext"]["runAsUser"] == 1000
    assert init["securityContext"]["allowPrivilegeEscalation"] is False
    assert init["volumeMounts"] == [{"name": "home", "mountPath": "/home/jovyan"}]
    assert "gitpuller https://example.org/tutorials.git v1 /home/jovyan/tutorials" in init["command"][-1]
    await spawner.stop()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"profile": "fiji"}, "unknown environment 'fiji'; choose one of: oggm"),
        ({"profile": "oggm", "size": "large"}, "size 'large' is not offered for OGGM; choose one of: small, medium"),
    ],
)
async def test_choices_outside_the_cohort_are_refused_before_anything_is_created(api, options, message):
    spawner, _ = member("bea")
    with pytest.raises(web.HTTPError) as info:
        await spawn(spawner, options)
    assert info.value.status_code == 400 and message in info.value.jupyterhub_message
    assert api.objects("pods", NS) == [] and api.objects("persistentvolumeclaims", NS) == []


async def test_outside_the_window_a_spawn_is_refused_with_the_window(api):
    spawner, cohort = member("cai", start=(NOW + timedelta(days=1)).isoformat(), end=(NOW + timedelta(days=2)).isoformat())
    with pytest.raises(web.HTTPError) as info:
        await spawn(spawner, {})
    assert info.value.status_code == 403
    assert f"cohort 'glaciers' opens on {cohort.start:%Y-%m-%d %H:%M} UTC" in info.value.jupyterhub_message
    assert "id=\"oggmhub-cohort-refusal\"" in spawner._render_picker()
    assert api.objects("pods", NS) == [] and api.objects("persistentvolumeclaims", NS) == []
