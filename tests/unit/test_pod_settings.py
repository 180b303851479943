"""Merge rules of the Kubernetes spawner, as pure functions (no cluster needed)."""

import pytest

from oggmhub.backends.kubernetes import pod as pod_settings
from oggmhub.backends.kubernetes.pod import CHOICE_TRAITS, UnsafePodError, check_user_container
from oggmhub.choice import resolve_choice


def base(**overrides):
    values = {name: {} for name in CHOICE_TRAITS}
    values.update(volumes=[], volume_mounts=[], tolerations=[], init_containers=[], image="base:1", cpu_guarantee=None,
                  cpu_limit=None, mem_guarantee=None, mem_limit=None)
    values.update(overrides)
    return values


def choice_settings(choice, configured):
    """The pod settings of ``choice`` over ``configured``, with the session's variables as
    the spawner computes them (Dask on the local backend)."""
    return pod_settings.choice_settings(choice, configured, session=pod_settings.pod_session_environment(choice, "local"))


def test_choice_sets_image_resources_and_session_env(catalog):
    settings = choice_settings(resolve_choice(catalog, {"profile": "oggm", "size": "medium"}), base())
    assert settings["image"] == catalog.environments["oggm"].image.ref
    assert settings["image"].startswith("ghcr.io/oggmhub/oggm:")
    assert (settings["cpu_guarantee"], settings["cpu_limit"]) == (1, 2)
    assert (settings["mem_guarantee"], settings["mem_limit"]) == (4 * 1024**3, 8 * 1024**3)
    env = settings["environment"]
    assert env["OGGM_DOWNLOAD_CACHE_RO"] == "1"
    assert env["OGGMHUB_ENVIRONMENT"] == "oggm" and env["OGGMHUB_SIZE"] == "medium"
    assert env["OGGMHUB_CPU_LIMIT"] == "2" and env["OGGMHUB_MEM_LIMIT"] == str(8 * 1024**3)
    assert settings["extra_labels"]["oggmhub.org/environment"] == "oggm"


def test_profile_settings_add_to_the_base_and_never_drop_it(catalog):
    configured = base(
        environment={"SITE": "glacier-lab", "OGGM_EXTRACT_DIR": "/overridden-by-catalog"},
        volumes=[{"name": "shared", "nfs": {"server": "nfs", "path": "/shared"}}],
        volume_mounts=[{"name": "shared", "mountPath": "/shared"}],
        node_selector={"pool": "users"},
        tolerations=[{"key": "users", "operator": "Exists"}],
        extra_resource_limits={"ephemeral-storage": "10Gi"},
        extra_labels={"site": "lab"},
    )
    choice = resolve_choice(catalog, {"profile": "slicer", "gpu": "t4"})
    s = choice_settings(choice, configured)
    assert s["environment"]["SITE"] == "glacier-lab"
    assert s["environment"]["LIBGL_ALWAYS_SOFTWARE"] == "1"
    assert [v["name"] for v in s["volumes"]][:2] == ["home", "shared"]
    assert [v for v in s["volumes"][2:] if "emptyDir" not in v] == []  # Slicer's dataset: its mount folder
    assert s["volumes"][0]["persistentVolumeClaim"]["claimName"] == "{pvc_name}"
    mounts = {m["name"]: m["mountPath"] for m in s["volume_mounts"]}
    assert {k: v for k, v in mounts.items() if k in ("home", "shared")} == {"home": "/home/jovyan", "shared": "/shared"}
    assert set(mounts.values()) == {"/home/jovyan", "/shared", "/data"}
    assert s["node_selector"] == {"pool": "users", "cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert s["tolerations"] == [
        {"key": "users", "operator": "Exists"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    ]
    assert s["extra_resource_limits"] == {"ephemeral-storage": "10Gi", "nvidia.com/gpu": "1"}
    assert s["extra_labels"]["site"] == "lab"
    # the base itself is untouched
    assert configured["volumes"] == [{"name": "shared", "nfs": {"server": "nfs", "path": "/shared"}}]


def test_an_existing_home_claim_is_kept_not_doubled(catalog):
    z2jh_home = {"name": "volume-{user_server}", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}
    configured = base(volumes=[z2jh_home], volume_mounts=[{"name": "volume-{user_server}", "mountPath": "/home/jovyan"}])
    s = choice_settings(resolve_choice(catalog, {"profile": "fiji"}), configured)
    assert [v for v in s["volumes"] if "emptyDir" not in v] == [z2jh_home]  # beside Fiji's dataset folder
    assert [m["mountPath"] for m in s["volume_mounts"]].count("/home/jovyan") == 1


def test_a_gpu_never_leaks_into_a_later_choice_without_one(catalog):
    configured = base()
    with_gpu = choice_settings(resolve_choice(catalog, {"profile": "fiji", "gpu": "t4"}), configured)
    without = choice_settings(resolve_choice(catalog, {"profile": "fiji", "gpu": "none"}), configured)
    assert "nvidia.com/gpu" in with_gpu["extra_resource_limits"]
    assert without["extra_resource_limits"] == {} and without["node_selector"] == {}
    assert without["tolerations"] == [] and without["environment"]["OGGMHUB_GPU_COUNT"] == "0"


def pod(**container_sc):
    sc = {"runAsUser": 1000, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    sc.update(container_sc)
    return {"spec": {"containers": [{"name": "notebook", "securityContext": sc},
                                    {"name": "mounter", "securityContext": {"privileged": True}}]}}


def test_unprivileged_user_container_passes_sidecars_are_not_judged_here():
    check_user_container(pod())


@pytest.mark.parametrize(
    "sc, message",
    [
        ({"runAsUser": 0}, "runAsUser is 0"),
        ({"privileged": True}, "privileged is true"),
        ({"allowPrivilegeEscalation": True}, "allowPrivilegeEscalation is not false"),
        ({"capabilities": {"drop": []}}, "capabilities do not drop ALL"),
        ({"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}, "capabilities add ['SYS_ADMIN']"),
    ],
)
def test_privileged_user_containers_are_refused(sc, message):
    with pytest.raises(UnsafePodError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_user_container(pod(**sc))


def test_the_datasets_links_hook_is_a_choice_setting_over_the_configured_hooks(catalog):
    """lifecycle_hooks follow the choice like every other setting: the configured hook
    stays; the links' postStart links the chosen datasets, and without any only clears an
    earlier session's links."""
    configured = base(lifecycle_hooks={"preStop": {"exec": {"command": ["true"]}}})
    with_data = choice_settings(resolve_choice(catalog, {"profile": "oggm"}), configured)
    assert with_data["lifecycle_hooks"]["preStop"] == {"exec": {"command": ["true"]}}
    assert "oggm-mirror" in " ".join(with_data["lifecycle_hooks"]["postStart"]["exec"]["command"])
    without = choice_settings(resolve_choice(catalog, {"profile": "fiji", "datasets": []}), configured)
    assert without["lifecycle_hooks"]["preStop"] == {"exec": {"command": ["true"]}}
    assert "oggm-mirror" not in " ".join(without["lifecycle_hooks"]["postStart"]["exec"]["command"])
    assert configured["lifecycle_hooks"] == {"preStop": {"exec": {"command": ["true"]}}}  # the base is not changed


def block_metadata():
    """The init container the chart's hub config appends (singleuser.cloudMetadata), a model."""
    from kubernetes_asyncio import client

    return client.V1Container(name="block-cloud-metadata", image="quay.io/jupyterhub/k8s-network-tools:4",
                              command=["iptables", "--append", "OUTPUT", "--jump", "DROP"],
                              security_context=client.V1SecurityContext(privileged=True, run_as_user=0))


def test_the_charts_dict_form_of_volumes_and_mounts_is_taken(catalog):
    """The z2jh chart's hub config sets volumes and volume mounts as dicts (name -> item),
    which kubespawner accepts: the home it declares is the home, once, at its mount path."""
    configured = base(
        volumes={"home": {"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}},
        volume_mounts={"home": {"mountPath": "/home/jovyan", "name": "home", "subPath": None},
                       "0-files": {"mountPath": "/etc/site.txt", "subPath": "site", "name": "files"}},
        init_containers=[block_metadata()], tolerations=[{"key": "hub.jupyter.org/dedicated", "operator": "Equal"}],
    )
    s = choice_settings(resolve_choice(catalog, {"profile": "oggm"}), configured)
    assert [v["name"] for v in s["volumes"]].count("home") == 1
    assert [m["name"] for m in s["volume_mounts"]][:2] == ["files", "home"]  # ordered by the chart's keys
    assert {m["name"]: m["mountPath"] for m in s["volume_mounts"]}["home"] == "/home/jovyan"
    blocker, sidecar = s["init_containers"]  # the chart's, as a manifest, then the mount sidecar
    assert sidecar["name"] == "oggmhub-datasets"
    assert blocker["name"] == "block-cloud-metadata" and blocker["securityContext"]["runAsUser"] == 0
    assert blocker["command"][0] == "iptables" and "run_as_user" not in blocker["securityContext"]
    assert s["tolerations"][0]["key"] == "hub.jupyter.org/dedicated"


def test_a_pod_that_will_never_serve_is_named_in_one_sentence():
    from oggmhub.backends.kubernetes.pod import pod_start_failure

    waiting = {"status": {"phase": "Pending", "containerStatuses": [{"name": "notebook", "state": {"waiting": {
        "reason": "ErrImagePull", "message": "image 'ghcr.io/oggmhub/oggm:r2d-0' not found."}}}]}}
    assert pod_start_failure(waiting) == ("The server cannot start: container 'notebook' is stuck (ErrImagePull: "
                                          "image 'ghcr.io/oggmhub/oggm:r2d-0' not found). Nothing was left running.")
    failed = {"status": {"phase": "Failed", "reason": "Evicted", "message": "The node was low on memory."}}
    assert pod_start_failure(failed) == ("The server's pod failed (Evicted: The node was low on memory). "
                                         "Nothing was left running.")
    for still_starting in ({"status": {"phase": "Pending", "containerStatuses": [
                               {"name": "notebook", "state": {"waiting": {"reason": "ContainerCreating"}}}]}},
                           {"status": {"phase": "Running"}}, {}, None):
        assert pod_start_failure(still_starting) is None
