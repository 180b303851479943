"""``OGGMHubSpawner``: kubespawner, driven by the catalog.

What it adds to ``KubeSpawner``:

* the picker (environment, then size and GPU variant) from the catalog, rendered by
  kubespawner's own profile form and validated on the hub before anything is created;
* the choice merged into the base configuration (:mod:`oggmhub.backends.kubernetes.pod`), with a
  persistent per-user home volume that no choice can drop;
* safe defaults in the user container, checked on every pod before it is created;
* with ``enable_user_namespaces``, a ResourceQuota and a LimitRange in each user's
  namespace (:mod:`oggmhub.backends.kubernetes.namespace`), and with ``dask_kubernetes`` a Role to
  start Dask clusters there (:mod:`oggmhub.session.dask_kubernetes`, from the worker template of
  :mod:`.dask_template`), deleted on stop;
* a GPU variant no node offers is refused at once (:func:`gpu_node_problem`);
* with ``tasks_url``, the session reaches the tasks service (``OGGMHUB_TASKS_URL``, read by
  :mod:`oggmhub.session.tasks`), and with user namespaces the tasks service's account may
  run task Jobs there (:func:`~oggmhub.backends.kubernetes.namespace.tasks_role`).
"""

from __future__ import annotations

import asyncio
import copy
import json

from kubernetes_asyncio.client.exceptions import ApiException
from kubespawner import KubeSpawner
from kubespawner.clients import shared_client
from traitlets import Bool, Unicode, default

from oggmhub.errors import SpawnFailed
from oggmhub.cohorts import materials
from oggmhub.cohorts.model import user_cohorts
from oggmhub.session import dask_limits
from oggmhub.session import env as session_vars
from oggmhub.picker import CatalogPickerMixin
from oggmhub.storage.quotas import user_quota

from oggmhub.session import dask_kubernetes as dask_k8s
from oggmhub.backends.kubernetes import dask_template, home_claim
from oggmhub.backends.kubernetes import namespace as user_namespace
from oggmhub.backends.base import SessionBackend
from oggmhub.backends.kubernetes.pod import (CHOICE_TRAITS, check_user_container, choice_settings, literal, mount_sidecar_failure,
                                             pod_session_environment, pod_start_failure)


def start_failure_message(error):
    """A clear, one-line message for a failed start, or None to keep the error as is."""
    tail = "Nothing was left running; try again, and tell the hub's admins if it keeps failing."
    if isinstance(error, ApiException):
        try:
            detail = json.loads(error.body).get("message") or error.reason
        except (TypeError, ValueError, AttributeError):
            detail = error.reason
        return f"Kubernetes refused to start your server ({error.status} {error.reason}: {detail}). {tail}"
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        what = str(error) or "a request timed out"
        return f"Kubernetes could not start your server in time ({what}). {tail}"
    return None


def gpu_node_problem(nodes, gpu):
    """Why no node in ``nodes`` (V1Node dicts) can run catalog ``GpuVariant`` ``gpu``, or None."""
    labelled = [n for n in nodes if gpu.node_selector.items() <= ((n.get("metadata") or {}).get("labels") or {}).items()
                and not (n.get("spec") or {}).get("unschedulable")]
    ready = [n for n in labelled
             if int(str(((n.get("status") or {}).get("allocatable") or {}).get(gpu.resource, "0")) or 0) >= gpu.count]
    if ready:
        return None
    where = ", ".join(f"{k}={v}" for k, v in gpu.node_selector.items()) or "any labels"
    if labelled:
        why = (f"{len(labelled)} node(s) match {where} but none has {gpu.count} {gpu.resource} allocatable "
               "(is the GPU device plugin running?)")
    else:
        why = f"no schedulable node has {where} with {gpu.count} {gpu.resource} allocatable"
    return (f"This hub has no node for {gpu.display_name}: {why}. Choose 'No GPU', or ask the hub's "
            "admins for GPU nodes. Nothing was started.")


# kind: (API client, create method, replace method or None to keep what exists)
_ENSURE = {
    "LimitRange": ("CoreV1Api", "create_namespaced_limit_range", "replace_namespaced_limit_range"),
    "ResourceQuota": ("CoreV1Api", "create_namespaced_resource_quota", "replace_namespaced_resource_quota"),
    "ServiceAccount": ("CoreV1Api", "create_namespaced_service_account", None),
    "Role": ("RbacAuthorizationV1Api", "create_namespaced_role", "replace_namespaced_role"),
    "RoleBinding": ("RbacAuthorizationV1Api", "create_namespaced_role_binding", "replace_namespaced_role_binding"),
}

SAFE_CONTAINER_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


class OGGMHubSpawner(CatalogPickerMixin, SessionBackend, KubeSpawner):
    """Spawn the environment a user picked from the catalog, with a persistent home."""


    home_mount_path = Unicode(
        "/home/jovyan",
        config=True,
        help="Where the persistent home volume is mounted in the user container.",
    )

    dataset_mounter_image = Unicode(
        "ghcr.io/oggmhub/mounter:0.1.0",
        config=True,
        help="""Image of the sidecar that mounts a session's datasets read-only (FUSE).

        The only container of a user's pod with FUSE privileges; it runs
        ``oggmhub datasets mount --from-env``, so any image with oggmhub[mount] and
        Debian's fuse3 serves (this repository ships no build context for it). The
        user's container sees the mounts, never the privileges; c.DatasetMounts.*
        reaches it as $OGGMHUB_MOUNT_OPTIONS.""",
    )

    dask_kubernetes = Bool(
        False,
        config=True,
        help="""Let users start Dask clusters on Kubernetes from their notebooks
        (``oggmhub.session.dask.cluster()``, through the dask-kubernetes operator, which must be
        installed).

        Needs ``enable_user_namespaces``: each user's namespace then also gets a
        ServiceAccount whose Role reaches only pods, services and the Dask resources
        there, and the user pod (only then) gets its token. The namespace's
        ResourceQuota holds the catalog's Dask limits, even against direct API calls.
        A user's Dask clusters are deleted when their server stops.""",
    )

    user_service_account = Unicode(
        user_namespace.SERVICE_ACCOUNT,
        config=True,
        help="Name of the ServiceAccount created in each user namespace for Dask (with dask_kubernetes).",
    )

    require_pod_policy = Bool(
        True,
        config=True,
        help="""With dask_kubernetes, refuse to start servers unless the admission policy
        that keeps user namespaces unprivileged is installed (ValidatingAdmissionPolicy
        and binding from ``oggmhub.backends.kubernetes.namespace.pod_policy``): a user who may create
        DaskClusters can otherwise have the Dask operator run any pod in their namespace.

        Where the hub may not read admission policies, the check is skipped with a warning.""",
    )

    tasks_url = Unicode(
        "",
        config=True,
        help="""Where sessions reach the hub's ``tasks`` service (tool tasks as REST jobs), e.g.
        ``http://proxy-public/services/tasks/``; it reaches the pod as $OGGMHUB_TASKS_URL, which
        ``oggmhub.session.tasks`` (start, wait, fetch from a notebook) reads. Empty: sessions
        are not told of one.

        With ``enable_user_namespaces``, each user namespace then also gets the Role
        ``oggmhub-tasks`` (Jobs, their plan ConfigMaps, pods and logs, nothing else) bound to
        ``tasks_service_account``, so the service can run the user's task Jobs there, counted
        by the namespace's ResourceQuota.""",
    )

    tasks_service_account = Unicode(
        "hub",
        config=True,
        help="""The ServiceAccount the tasks service runs as, ``NAME`` (in the hub's namespace)
        or ``NAMESPACE/NAME``: with ``tasks_url`` and user namespaces it gets the Role
        ``oggmhub-tasks`` in each user namespace. z2jh runs hub-managed services in the hub pod,
        as the hub's account ``hub``.""",
    )

    gpu_node_check = Bool(
        True,
        config=True,
        help="""Before starting a GPU variant, check that some node offers it (the
        variant's node_selector labels, and its GPU resource allocatable), and refuse at
        once with a clear message if none does, instead of waiting out start_timeout.

        Needs the hub to be allowed to list nodes (where it is not, the check is skipped
        with a warning in the hub's log).
        Turn it off where GPU node pools scale up from zero nodes.""",
    )

    # --- safe, persistent defaults (each still configurable the kubespawner way) -----

    @default("uid")
    def _default_uid(self):
        return 1000

    @default("fs_gid")
    def _default_fs_gid(self):
        return 100

    @default("container_security_context")
    def _default_container_security_context(self):
        return copy.deepcopy(SAFE_CONTAINER_SECURITY_CONTEXT)

    @default("automount_service_account_token")
    def _default_automount_service_account_token(self):
        return self.dask_kubernetes  # a token only to start Dask clusters, in the user's namespace

    @default("service_account")
    def _default_service_account(self):
        return self.user_service_account if self.dask_kubernetes else None

    @default("user_namespace_labels")
    def _default_user_namespace_labels(self):
        return dict(user_namespace.NAMESPACE_LABELS)

    @default("storage_pvc_ensure")
    def _default_storage_pvc_ensure(self):
        return True

    @default("pvc_name_template")
    def _default_pvc_name_template(self):
        # one home per user, shared by all their servers and environments; kubespawner's
        # "safe" slug scheme adds a hash to names that needed escaping, so two usernames
        # that escape alike never share a volume
        return "home-{username}"

    @default("storage_capacity")
    def _default_storage_capacity(self):
        return "10Gi"

    @default("delete_pvc")
    def _default_delete_pvc(self):
        # deleting a hub user does not destroy their files unless the operator asks
        return False

    @default("default_url")
    def _default_default_url(self):
        return "/lab"

    # --- the choice -------------------------------------------------------------------

    @property
    def _dask_backend(self):
        return "kubernetes" if self.dask_kubernetes else "local"

    def session_environment(self, choice):
        """Catalog mount paths as they are, Dask on Kubernetes with ``dask_kubernetes``, the
        tasks service's URL with ``tasks_url``."""
        env = pod_session_environment(choice, self._dask_backend)
        if self.tasks_url:
            env[session_vars.TASKS_URL] = literal(self.tasks_url)
        return env

    def _tasks_account(self):
        if not self.tasks_url:
            return None
        account = self.tasks_service_account
        return account if "/" in account else f"{self._namespace_default()}/{account}"

    def sidecar_env(self):
        """The mount sidecar's own variables: ``c.DatasetMounts.*`` as ``$OGGMHUB_MOUNT_OPTIONS``
        (read by ``oggmhub datasets mount``), on the notebook's pod and every Dask pod."""
        options = json.dumps(self.mount_options.as_dict(), separators=(",", ":"), sort_keys=True)
        return [{"name": session_vars.MOUNT_OPTIONS, "value": options}]

    def apply_choice(self, choice):
        """Merge the choice into the configured base (snapshotted once, reused after)."""
        settings = choice_settings(choice, self.base_settings(CHOICE_TRAITS), session=self.session_environment(choice),
                                   home_mount_path=self.home_mount_path, mounter_image=self.dataset_mounter_image,
                                   sidecar_env=self.sidecar_env())
        for name, value in settings.items():
            setattr(self, name, value)
        if self._base_capacity is None:
            self._base_capacity = self.storage_capacity
        quota = self._home_quota()  # the home claim's size (home_claim.py)
        self.storage_capacity = str(quota.bytes) if quota else self._base_capacity

    _base_capacity = None

    def _home_quota(self):
        """The user's home quota (the catalog's storage section, their cohorts'), or None."""
        return user_quota(self.catalog, self.user, [c.name for c in user_cohorts(self.user)])

    # --- Dask, GPUs and the user namespace ------------------------------------------------

    def _dask_limits(self):
        choice = self.choice
        return dask_limits.with_cohort(dask_limits.limits_for(choice.environment, choice.size), self.environment)

    def get_env(self):
        """The pod's environment; with Dask on, the worker template rendered from it."""
        env = super().get_env()
        if self.dask_kubernetes and self.choice is not None:
            own = {k: env[k] for k in self.environment if isinstance(env.get(k), str)}
            choice, base = self.choice, self._base_settings
            gpu = choice.gpu
            if gpu is None and self._dask_limits().gpus:
                gpu = next(iter(choice.environment.gpus.values()), None)
            template = dask_template.worker_template(
                image=self.image, env=own, size=choice.size, datasets=choice.datasets,
                mounter_image=self.dataset_mounter_image, mounter_env=self.sidecar_env(), uid=self.uid if isinstance(self.uid, int) else 1000,
                gid=self.gid if isinstance(self.gid, int) else None,
                fs_gid=self.fs_gid if isinstance(self.fs_gid, int) else None,
                container_security_context=self.container_security_context,
                node_selector=base["node_selector"], tolerations=base["tolerations"], gpu=gpu,
                gpu_image=(gpu.image or choice.environment.image).ref if gpu else None,
            )
            env[dask_k8s.ENV_TEMPLATE] = json.dumps(template, separators=(",", ":"))
        return env

    async def _ensure_namespace(self):
        """kubespawner's namespace, then its quota, defaults and (with Dask) RBAC, idempotently."""
        await super()._ensure_namespace()
        objects = user_namespace.user_objects(self.namespace, self.choice, self._dask_limits(),
                                              dask=self.dask_kubernetes, account=self.user_service_account,
                                              tasks_account=self._tasks_account())
        for manifest in objects:
            client_type, create, replace = _ENSURE[manifest["kind"]]
            api = shared_client(client_type)
            try:
                await asyncio.wait_for(getattr(api, create)(self.namespace, manifest), self.k8s_api_request_timeout)
            except ApiException as e:
                if e.status != 409:
                    raise
                if replace:  # it exists: bring it up to this choice (e.g. the quota of a new size)
                    name = manifest["metadata"]["name"]
                    await asyncio.wait_for(getattr(api, replace)(name, self.namespace, manifest),
                                           self.k8s_api_request_timeout)

    _pod_policy_found = False  # class-wide: checked until found once

    async def _check_pod_policy(self):
        """Refuse Dask on Kubernetes without the admission policy (see ``require_pod_policy``)."""
        api = shared_client("AdmissionregistrationV1Api")
        selector = f"metadata.name={user_namespace.POD_POLICY}"
        try:
            found = [await asyncio.wait_for(ls(field_selector=selector), self.k8s_api_request_timeout)
                     for ls in (api.list_validating_admission_policy, api.list_validating_admission_policy_binding)]
        except ApiException as e:
            if e.status not in (401, 403, 404):
                raise
            self.log.warning("Cannot read admission policies (%s %s); not checking for %s",
                             e.status, e.reason, user_namespace.POD_POLICY)
            return
        if not all(listed.items for listed in found):
            raise SpawnFailed(
                f"This hub lets users start Dask clusters, but the admission policy that keeps their pods "
                f"unprivileged ({user_namespace.POD_POLICY}) is not installed. Tell the hub's admins "
                "(oggmhub.backends.kubernetes.namespace.pod_policy renders it). Nothing was started.") from None
        type(self)._pod_policy_found = True

    async def _check_gpu_nodes(self):
        """Refuse a GPU variant no node offers (see ``gpu_node_check``)."""
        gpu = self.choice.gpu
        try:
            nodes = await asyncio.wait_for(self.api.list_node(), self.k8s_api_request_timeout)
        except ApiException as e:
            if e.status in (401, 403, 404):  # not allowed (or no such API): cannot tell
                self.log.warning("Cannot list nodes to check for %s (%s %s); starting anyway. Let the "
                                 "hub list nodes, or set gpu_node_check False", gpu.name, e.status, e.reason)
                return
            raise
        problem = gpu_node_problem(self.api.api_client.sanitize_for_serialization(nodes).get("items", []), gpu)
        if problem:
            raise SpawnFailed(problem)

    async def _delete_dask_clusters(self):
        """Delete the Dask clusters and worker groups of this server's pod, and any in the
        namespace that no running pod owns; log failures (ownerReferences still apply)."""
        api, timeout = shared_client("CustomObjectsApi"), self.k8s_api_request_timeout
        try:
            listed = await asyncio.wait_for(self.api.list_namespaced_pod(self.namespace), timeout)
            others = {p.metadata.name for p in listed.items if p.metadata.name != self.pod_name}
            for plural in ("daskclusters", "daskworkergroups"):
                found = await asyncio.wait_for(api.list_namespaced_custom_object(
                    "kubernetes.dask.org", "v1", self.namespace, plural), timeout)
                for obj in found.get("items", []):
                    if not any(dask_k8s.owned_by(obj, pod) for pod in others):
                        await asyncio.wait_for(api.delete_namespaced_custom_object(
                            "kubernetes.dask.org", "v1", self.namespace, plural, obj["metadata"]["name"]), timeout)
        except ApiException as e:
            if e.status != 404:  # 404: no Dask resources on this cluster, or already gone
                self.log.error("Could not delete %s's Dask clusters: %s %s", self._log_name, e.status, e.reason)
        except asyncio.TimeoutError:
            self.log.error("Could not delete %s's Dask clusters: the API timed out", self._log_name)

    async def stop(self, now=False):
        if self.dask_kubernetes:
            await self._delete_dask_clusters()
        return await super().stop(now=now)

    def apply_cohort(self, policy):
        """Add the member's limits; sync the cohort's materials in an init container."""
        super().apply_cohort(policy)
        if policy.materials:
            uid = self.uid if isinstance(self.uid, int) else 1000
            container = materials.init_container(
                policy.materials, self.image, self.home_mount_path,
                {"runAsUser": uid, **self.container_security_context},
            )
            # kubespawner expands {placeholders} in init containers: keep braces literal
            container["command"] = literal(container["command"])
            self.init_containers = [*self.init_containers, container]

    async def _start(self):  # the choice is applied first (CatalogPickerMixin)
        if self.dask_kubernetes and not self.enable_user_namespaces:
            raise SpawnFailed("This hub is misconfigured: OGGMHubSpawner.dask_kubernetes needs "
                              "enable_user_namespaces (per-user limits hold in a user's own namespace "
                              "only). Tell the hub's admins. Nothing was started.")
        if self.dask_kubernetes and self.require_pod_policy and not self._pod_policy_found:
            await self._check_pod_policy()
        # refuse an unsafe configuration before anything (even the home volume) is created
        check_user_container(self.api.api_client.sanitize_for_serialization(await self.get_pod_manifest()))
        if self.choice.gpu is not None and self.gpu_node_check:
            await self._check_gpu_nodes()
        await self._check_datasets_resolve()
        quota = self._home_quota()
        if quota and self.storage_pvc_ensure:  # an existing smaller claim grows; a refusal is logged
            await home_claim.follow_quota(self.api, self.namespace, self.pvc_name, quota.bytes, self.log)
        self._starting = True
        try:
            return await super()._start()
        except SpawnFailed:  # the mount sidecar's (is_pod_running): no pod left behind
            await self._remove_pod_after_failure()
            raise
        except Exception as error:
            message = start_failure_message(error)
            if message is None:
                raise
            self.log.error("Start of %s failed: %s", self._log_name, error)
            await self._remove_pod_after_failure()
            raise SpawnFailed(message) from error
        finally:
            self._starting = False

    _starting = False

    def is_pod_running(self, pod):
        """KubeSpawner's check, which its start polls; while starting, a failed dataset
        mount sidecar (a 404, a refused permission: what only it can see), an image that
        cannot be pulled or a failed pod ends the start at once with its one sentence,
        instead of waiting out start_timeout."""
        if self._starting:
            failure = mount_sidecar_failure(pod) or pod_start_failure(pod)
            if failure:
                raise SpawnFailed(failure)
        return super().is_pod_running(pod)

    async def _check_datasets_resolve(self):
        """A required dataset whose host does not resolve, or refuses connections, fails
        the start within c.DatasetMounts.timeout, in one sentence naming it, before any
        object is created. The rest (a 404, a missing permission) only the mount sidecar
        can tell, with the dataset's credentials: a ``required: false`` one it leaves out
        and names in the session (oggmhub.session.datasets.unavailable)."""
        from oggmhub.mounts.reachable import Unreachable, precheck  # stdlib only

        required = [d for d in self.choice.datasets if getattr(d, "required", True)]
        timeout = self.mount_options.timeout
        results = await asyncio.gather(*(asyncio.to_thread(precheck, d, timeout) for d in required),
                                       return_exceptions=True)
        for dataset, result in zip(required, results):
            if isinstance(result, Unreachable):
                raise SpawnFailed(f"dataset {dataset.name!r}: {result}. Nothing was started.")

    async def _remove_pod_after_failure(self):
        """Delete a pod a failed start may have created (a hung create may have landed)."""
        try:
            await self.stop(now=True)
        except Exception:  # the API may still be failing; JupyterHub's stop() retries
            self.log.exception("Could not remove the pod of %s's failed start", self._log_name)

    async def load_user_options(self):
        """Called by KubeSpawner's ``_start()``: nothing to load, the validated choice (applied
        before ``_start`` runs) replaces kubespawner's profile overrides."""

    async def progress(self):
        if self.choice is not None:
            yield {"progress": 1, "message": f"Starting {self.choice.describe()}"}
        async for event in super().progress():
            yield event
