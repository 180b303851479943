"""A task run on Kubernetes: a ConfigMap with its plan and a Job in the user's namespace
(pure functions: catalog entry and plan in, manifests out).

The Job's pod runs the environment's image (where the tool and oggmhub's wheel are), as
uid 1000 without privileges like a user's server, with the user's home volume at
``/home/jovyan`` and the environment's datasets mounted read-only by the mount sidecar
(:mod:`oggmhub.session.mount_sidecar`, the same as in a session). Its one container runs
``python -m oggmhub.tasks.execution /plan/plan.json``: the same code a local Dask worker
runs. CPU and memory are the environment's default size, so the namespace's ResourceQuota
(the user's Dask limits, :mod:`oggmhub.backends.kubernetes.namespace`) counts task runs
too; Kubernetes queues what does not fit, no scheduler of oggmhub's.
"""

from __future__ import annotations

import copy
import json

from oggmhub.session.mount_sidecar import pod_settings

HOME = "/home/jovyan"
IMAGE_TASKS = "/srv/conda/envs/notebook/share/oggmhub/tasks"  # where the images' postBuild copies tasks/


def _name(run_id):
    return f"oggmhub-task-{run_id}"


def pod_plan(plan, home, home_mount=HOME, tasks_dir=IMAGE_TASKS):
    """``plan`` with the user's local ``home`` rewritten to the pod's home mount, and the
    tool run from the image's copy of the environment's tasks."""
    plan = copy.deepcopy(plan)
    prefix = home.rstrip("/") + "/"
    for group in ("inputs", "outputs"):
        for loc in plan[group].values():
            if loc["kind"] == "local":
                if not loc["path"].startswith(prefix):
                    raise ValueError(f"{loc['path']} is not in the user's home {prefix}")
                loc["path"] = home_mount + "/" + loc["path"][len(prefix):]
    plan["run_dir"] = f"/tmp/oggmhub-task-{plan['run_id']}"
    *_, tool = plan["command"]
    tool = f"{tasks_dir}/{tool.rsplit('/', 1)[-1]}"
    if plan["kind"] == "scijava-script":  # -I: the working folder's files are never imported
        plan["command"] = ["python", "-I", "-m", "oggmhub.tasks.script_runner", tool]
    else:
        plan["command"] = ["python", "-I", tool] if tool.endswith(".py") else [tool]
    return plan


def plan_config_map(plan, namespace, owner=None):
    """The ConfigMap holding ``plan`` (mounted at /plan in the Job's pod); ``owner``: the
    created Job (``{"name", "uid"}``), so Kubernetes deletes the plan with its Job."""
    metadata = {"name": _name(plan["run_id"]), "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "oggmhub", "oggmhub.org/task-run": plan["run_id"]}}
    if owner:
        metadata["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": owner["name"],
                                        "uid": owner["uid"], "blockOwnerDeletion": False}]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"plan.json": json.dumps(plan)}}


def job(plan, namespace, environment, username, datasets=(), mounter_image=None, pvc_name=None,
        deadline=None, task_id="", ttl=3600, service_account=None):
    """The Job running ``plan`` (already :func:`pod_plan`-ed) for ``username``.

    ``service_account``: the pod's (it gets no token either way; None: the namespace's
    ``default``, which every namespace has)."""
    size = environment.default_size
    run_id = plan["run_id"]
    labels = {"app.kubernetes.io/managed-by": "oggmhub", "oggmhub.org/task-run": run_id,
              "oggmhub.org/environment": environment.name, "oggmhub.org/user": username}
    volumes = [
        {"name": "home", "persistentVolumeClaim": {"claimName": pvc_name or f"home-{username}"}},
        {"name": "plan", "configMap": {"name": _name(run_id)}},
        {"name": "scratch", "emptyDir": {}},
    ]
    mounts = [{"name": "home", "mountPath": HOME}, {"name": "plan", "mountPath": "/plan", "readOnly": True},
              {"name": "scratch", "mountPath": "/tmp"}]
    init = []
    env = [{"name": "HOME", "value": HOME}]
    if datasets:
        data = pod_settings(list(datasets), mounter_image or "ghcr.io/oggmhub/mounter:0.1.0", home_mount_path=HOME)
        volumes += data["volumes"]
        mounts += data["volume_mounts"]
        init += data.get("init_containers", [])
        env += [{"name": k, "value": str(v)} for k, v in sorted(data["environment"].items())]
    container = {
        "name": "task", "image": environment.image.ref,
        "command": ["python", "-m", "oggmhub.tasks.execution", "/plan/plan.json"],
        "env": env, "volumeMounts": mounts, "workingDir": HOME,
        "resources": {
            "requests": {"cpu": str(size.cpu_guarantee), "memory": str(size.mem_guarantee)},
            "limits": {"cpu": str(size.cpu_limit), "memory": str(size.mem_limit)},
        },
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True,
                            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    spec = {"restartPolicy": "Never", "automountServiceAccountToken": False,
            "securityContext": {"fsGroup": 100}, "volumes": volumes, "containers": [container]}
    if service_account:
        spec["serviceAccountName"] = service_account
    if init:
        spec["initContainers"] = init
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": _name(run_id), "namespace": namespace, "labels": labels,
                     "annotations": {"oggmhub.org/task": task_id}},
        "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": int(ttl),
                 **({"activeDeadlineSeconds": int(deadline)} if deadline else {}),
                 "template": {"metadata": {"labels": labels}, "spec": spec}},
    }


def manifests(plan, namespace, environment, username, home, **kwargs):
    """``[ConfigMap, Job]`` for one run (``home``: the user's home in the plan's paths); a
    batch is one pair per child."""
    plan = pod_plan(plan, home)
    return [plan_config_map(plan, namespace), job(plan, namespace, environment, username, **kwargs)]
