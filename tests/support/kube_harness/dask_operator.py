"""``DaskOperator``: the dask-kubernetes operator's behaviour on the emulated API (test
equipment; the real operator is a kopf app that needs a cluster's CRDs, peering and
admission, which kmock does not serve).

What it does, as the operator's controller does:

* a ``DaskCluster`` gets its scheduler pod (``<name>-scheduler``, the cluster's
  ``spec.scheduler.spec``), the scheduler's Service (``spec.scheduler.service``) and its
  default ``DaskWorkerGroup`` (``<name>-default``, ``spec.worker``); its ``status.phase``
  becomes ``Running`` (what ``KubeCluster`` waits for);
* a ``DaskWorkerGroup`` gets ``replicas`` worker pods, each with ``DASK_WORKER_NAME`` and
  ``DASK_SCHEDULER_ADDRESS`` (the scheduler Service's cluster DNS name), scaled up and down;
* what a deleted cluster made (groups, pods, Services) is deleted, as the garbage collector
  does through ``ownerReferences``.

The pods run wherever the kubelet runs them (:class:`.pods.PodRunner`: real ``dask
scheduler``/``dask worker`` processes from the image's environment). Reconciled every
``interval`` s from the API's current objects (idempotent, no watch bookkeeping).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import secrets

import kmock

CLUSTERS = "kubernetes.dask.org/v1/daskclusters"
GROUPS = "kubernetes.dask.org/v1/daskworkergroups"
CLUSTER_LABEL, COMPONENT_LABEL, GROUP_LABEL = "dask.org/cluster-name", "dask.org/component", "dask.org/workergroup-name"


def _owner(obj, kind):
    return {"apiVersion": "kubernetes.dask.org/v1", "kind": kind, "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True}


class DaskOperator:
    """Reconciles DaskClusters and DaskWorkerGroups into pods and Services."""

    def __init__(self, api, *, interval=0.5):
        self.api, self.interval = api, interval
        self._task = None

    async def start(self):
        self._task = asyncio.create_task(self._loop(), name="dask-operator")
        return self

    async def stop(self):
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _loop(self):
        while True:
            with contextlib.suppress(kmock.KubernetesError):
                await self.reconcile()
            await asyncio.sleep(self.interval)

    async def reconcile(self):
        clusters = {(c["metadata"]["namespace"], c["metadata"]["name"]): c for c in self.api.objects(CLUSTERS)}
        for (ns, name), cluster in clusters.items():
            await self._cluster(ns, name, cluster)
        groups = self.api.objects(GROUPS)
        for group in groups:
            ns, cluster = group["metadata"]["namespace"], group["spec"]["cluster"]
            if (ns, cluster) in clusters:
                await self._group(ns, group)
            else:
                await self.api.delete(GROUPS, ns, group["metadata"]["name"])
        live_groups = {(g["metadata"]["namespace"], g["metadata"]["name"]) for g in groups}
        for pod in self.api.objects("v1/pods"):
            labels = pod["metadata"].get("labels") or {}
            ns = pod["metadata"]["namespace"]
            if CLUSTER_LABEL not in labels:
                continue
            gone = (ns, labels[CLUSTER_LABEL]) not in clusters or (
                GROUP_LABEL in labels and (ns, labels[GROUP_LABEL]) not in live_groups)
            if gone:
                await self.api.delete("v1/pods", ns, pod["metadata"]["name"])
        for service in self.api.objects("v1/services"):
            labels = service["metadata"].get("labels") or {}
            ns = service["metadata"]["namespace"]
            if CLUSTER_LABEL in labels and (ns, labels[CLUSTER_LABEL]) not in clusters:
                await self.api.delete("v1/services", ns, service["metadata"]["name"])

    async def _cluster(self, ns, name, cluster):
        labels = {CLUSTER_LABEL: name, **(cluster["metadata"].get("labels") or {})}
        scheduler = f"{name}-scheduler"
        if self.api.get("v1/pods", ns, scheduler) is None:
            await self.api.create("v1/pods", {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": scheduler, "labels": {**labels, COMPONENT_LABEL: "scheduler"},
                             "ownerReferences": [_owner(cluster, "DaskCluster")]},
                "spec": copy.deepcopy(cluster["spec"]["scheduler"]["spec"])}, ns)
        if self.api.get("v1/services", ns, scheduler) is None:
            await self.api.create("v1/services", {
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": scheduler, "labels": labels, "ownerReferences": [_owner(cluster, "DaskCluster")]},
                "spec": copy.deepcopy(cluster["spec"]["scheduler"]["service"])}, ns)
        if self.api.get(GROUPS, ns, f"{name}-default") is None:
            await self.api.create(GROUPS, {
                "apiVersion": "kubernetes.dask.org/v1", "kind": "DaskWorkerGroup",
                "metadata": {"name": f"{name}-default", "labels": labels,
                             "ownerReferences": [_owner(cluster, "DaskCluster")]},
                "spec": {"cluster": name, "worker": copy.deepcopy(cluster["spec"]["worker"])}}, ns)
        if (cluster.get("status") or {}).get("phase") != "Running":
            await self.api.patch(CLUSTERS, ns, name, {"status": {"phase": "Running"}})

    async def _group(self, ns, group):
        name, cluster = group["metadata"]["name"], group["spec"]["cluster"]
        pods = [p for p in self.api.objects("v1/pods", ns)
                if (p["metadata"].get("labels") or {}).get(GROUP_LABEL) == name]
        want = int(group["spec"]["worker"].get("replicas", 0))
        for pod in pods[want:]:
            await self.api.delete("v1/pods", ns, pod["metadata"]["name"])
        for _ in range(want - len(pods)):
            pod_name = f"{name}-worker-{secrets.token_hex(5)}"
            spec = copy.deepcopy(group["spec"]["worker"]["spec"])
            address = f"tcp://{cluster}-scheduler.{ns}.svc.cluster.local:8786"
            for container in spec["containers"]:
                container["env"] = [*(container.get("env") or []), {"name": "DASK_WORKER_NAME", "value": pod_name},
                                    {"name": "DASK_SCHEDULER_ADDRESS", "value": address}]
            await self.api.create("v1/pods", {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "labels": {CLUSTER_LABEL: cluster, COMPONENT_LABEL: "worker",
                                                          GROUP_LABEL: name},
                             "ownerReferences": [_owner(group, "DaskWorkerGroup")]},
                "spec": spec}, ns)
