"""Pure functions: a resolved choice plus the base configuration in, pod settings out.

Kept free of I/O so the merge rules are testable without a cluster:

* volumes, mounts, env, node selectors, tolerations, labels and extra resource limits
  *add to* the base configuration, never replace it;
* the home volume is always there, whatever the base or a profile says;
* nothing from an earlier choice survives into the next one (a GPU chosen once never
  leaks into a later spawn without one), because every call starts from the base.
"""

from __future__ import annotations

import copy

from oggmhub.backends.kubernetes import dataset_links
from oggmhub.backends.session_env import session_environment
from oggmhub.session.mount_sidecar import pod_settings

HOME_VOLUME = "home"
# The traits a choice sets; the spawner snapshots their configured values as the base.
CHOICE_TRAITS = (
    "image",
    "cpu_guarantee",
    "cpu_limit",
    "mem_guarantee",
    "mem_limit",
    "environment",
    "volumes",
    "volume_mounts",
    "node_selector",
    "tolerations",
    "extra_resource_limits",
    "extra_resource_guarantees",
    "extra_labels",
    "init_containers",
    "lifecycle_hooks",
)


def home_volume(pvc_name_placeholder="{pvc_name}"):
    """The persistent home volume (kubespawner expands ``{pvc_name}``)."""
    return {"name": HOME_VOLUME, "persistentVolumeClaim": {"claimName": pvc_name_placeholder}}


def _with_home(volumes, mounts, home_mount_path):
    """Return volumes and mounts with the home volume present exactly once."""
    claims = [v for v in volumes if v.get("persistentVolumeClaim", {}).get("claimName") == "{pvc_name}"]
    if claims:
        home_name = claims[0]["name"]
    else:
        home_name = HOME_VOLUME
        volumes = [home_volume(), *volumes]
    if not any(m.get("name") == home_name for m in mounts):
        mounts = [{"name": home_name, "mountPath": home_mount_path}, *mounts]
    return volumes, mounts


def as_list(value):
    """A list-or-dict trait as a list of plain dicts: kubespawner accepts ``{key: item}``
    for volumes, volume mounts, init containers and tolerations (the z2jh chart's hub config
    sets volumes and mounts that way), the items ordered by their keys, and Kubernetes
    client models as items (the chart appends a ``V1Container`` to init containers)."""
    items = [item for _, item in sorted(value.items())] if isinstance(value, dict) else list(value or [])
    return [as_manifest(item) for item in items if item is not None]


def as_manifest(value):
    """A Kubernetes client model (``V1Container``...) as its manifest dict (camelCase keys,
    unset fields left out); anything else as it is, its lists and dicts converted inside."""
    if hasattr(value, "openapi_types") and hasattr(value, "attribute_map"):
        return {value.attribute_map[name]: as_manifest(getattr(value, name))
                for name in value.openapi_types if getattr(value, name) is not None}
    if isinstance(value, dict):
        return {key: as_manifest(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_manifest(item) for item in value]
    return value


def _add_named(base, extra):
    """Append ``extra`` items to ``base`` unless an item of the same name is there."""
    names = {item.get("name") for item in base}
    return [*base, *(item for item in extra if item.get("name") not in names)]


def choice_image(choice):
    """The image a pod of ``choice`` runs: a GPU variant's own build where it has one."""
    gpu = choice.gpu
    return (gpu.image if gpu is not None and gpu.image is not None else choice.environment.image).ref


def pod_session_environment(choice, dask_backend="local"):
    """:func:`~oggmhub.backends.session_env.session_environment` for a pod: catalog mount
    paths as they are, the pod's image, oggmhub's values kept literal through
    kubespawner's ``{placeholder}`` expansion."""
    return session_environment(choice, dask_backend=dask_backend, image=choice_image(choice), escape=literal)


def choice_settings(choice, base, *, session, home_mount_path="/home/jovyan", mounter_image=None,
                    sidecar_env=None):
    """Every trait value that depends on ``choice`` (:data:`CHOICE_TRAITS`), merged over
    ``base`` (their configured values).

    ``session``: the session's variables (the spawner's ``session_environment(choice)``).
    The session's datasets are mounted by a sidecar running ``mounter_image``
    (:mod:`oggmhub.session.mount_sidecar`), with ``sidecar_env`` added to its environment,
    and linked at ``~/datasets/<name>`` by a postStart hook added to the configured ones.
    """
    base = copy.deepcopy(base)
    for trait in ("volumes", "volume_mounts", "init_containers", "tolerations"):
        base[trait] = as_list(base[trait])
    env, size, gpu = choice.environment, choice.size, choice.gpu
    image = choice_image(choice)

    volumes, mounts = _with_home(base["volumes"], base["volume_mounts"], home_mount_path)
    # kubespawner expands {placeholders} in these traits: dataset JSON must stay literal
    data = literal(pod_settings(choice.datasets, mounter_image, home_mount_path=home_mount_path, env=sidecar_env)
                    if choice.datasets else {})
    volumes = _add_named(volumes, data.get("volumes", []))
    mounts = _add_named(mounts, data.get("volume_mounts", []))
    environment = {**base["environment"], **session}
    labels = {
        **base["extra_labels"],
        "oggmhub.org/environment": env.name,
        "oggmhub.org/size": size.name,
        "oggmhub.org/gpu": gpu.name if gpu else "none",
    }
    node_selector = dict(base["node_selector"])
    tolerations = list(base["tolerations"])
    limits = dict(base["extra_resource_limits"])
    guarantees = dict(base["extra_resource_guarantees"])
    if gpu:
        node_selector.update(gpu.node_selector)
        tolerations += [t for t in gpu.tolerations if t not in tolerations]
        limits[gpu.resource] = str(gpu.count)
        guarantees[gpu.resource] = str(gpu.count)
    return {
        "image": image,
        "cpu_guarantee": size.cpu_guarantee,
        "cpu_limit": size.cpu_limit,
        "mem_guarantee": size.mem_guarantee,  # bytes: JupyterHub reads "4G" as 4 GiB
        "mem_limit": size.mem_limit,
        "environment": environment,
        "volumes": volumes,
        "volume_mounts": mounts,
        "node_selector": node_selector,
        "tolerations": tolerations,
        "extra_resource_limits": limits,
        "extra_resource_guarantees": guarantees,
        "extra_labels": labels,
        "init_containers": _add_named(base["init_containers"], data.get("init_containers", [])),
        # ~/datasets/<name> links, where JupyterLab (and launch links) find the mounts
        "lifecycle_hooks": dataset_links.with_links(base["lifecycle_hooks"] or {}, choice.datasets, home_mount_path),
    }


def literal(value):
    """``value`` with braces doubled in every string, so kubespawner's ``{placeholder}``
    expansion keeps them as they are: every value oggmhub hands kubespawner goes through this."""
    if isinstance(value, str):
        return value.replace("{", "{{").replace("}", "}}")
    if isinstance(value, dict):
        return {k: literal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [literal(v) for v in value]
    return value


class UnsafePodError(RuntimeError):
    """The configuration would run user code with privileges; the spawn is refused."""


def check_user_container(pod, container_name="notebook"):
    """Raise :class:`UnsafePodError` unless the user container runs unprivileged.

    ``pod`` is a manifest dict. Sidecars are not checked here: a dataset mount sidecar
    may hold FUSE privileges, the user's container never does.
    """
    spec = pod["spec"]
    container = next(c for c in spec["containers"] if c["name"] == container_name)
    sc = container.get("securityContext") or {}
    pod_sc = spec.get("securityContext") or {}
    problems = []
    run_as = sc.get("runAsUser", pod_sc.get("runAsUser"))
    if run_as in (None, 0):
        problems.append(f"runAsUser is {run_as} (must be a non-root uid, e.g. 1000)")
    if sc.get("privileged"):
        problems.append("privileged is true")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        problems.append("capabilities do not drop ALL")
    if caps.get("add"):
        problems.append(f"capabilities add {caps['add']}")
    if problems:
        raise UnsafePodError(
            f"refusing to start container {container_name!r}: " + "; ".join(problems)
        )


def mount_sidecar_failure(pod):
    """Why the pod's dataset mount sidecar exited with an error (its termination message,
    one sentence naming the dataset and source), or None while it has not failed."""
    from oggmhub.session.mount_sidecar import SIDECAR_NAME

    status = (pod or {}).get("status") or {}
    for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        if container.get("name") != SIDECAR_NAME:
            continue
        for state in (container.get("state") or {}, container.get("lastState") or {}):
            ended = state.get("terminated") or {}
            if ended.get("exitCode"):
                message = (ended.get("message") or "").strip()
                return message or f"the dataset mounts failed (exit code {ended['exitCode']}, {ended.get('reason')})"
    return None


# a container waiting for one of these will not start by waiting longer
STUCK_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                 "CreateContainerConfigError", "CreateContainerError", "RunContainerError")


def pod_start_failure(pod):
    """Why a starting pod will never serve (one sentence), or None while it still may: a
    container stuck waiting (its image cannot be pulled, its configuration is wrong), or the
    pod failed. The dataset mount sidecar's own failures: :func:`mount_sidecar_failure`."""
    status = (pod or {}).get("status") or {}
    for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_REASONS:
            why = (waiting.get("message") or "").strip().rstrip(".")
            return (f"The server cannot start: container {container.get('name')!r} is stuck ({waiting['reason']}"
                    + (f": {why}" if why else "") + "). Nothing was left running.")
    if status.get("phase") == "Failed":
        why = (status.get("message") or "").strip().rstrip(".")
        return f"The server's pod failed ({status.get('reason') or 'Error'}" + (f": {why}" if why else "") + \
            "). Nothing was left running."
    return None
