"""Usage records on Kubernetes, from the pods the API lists: a pod's lifetime times its
requests and limits (no cgroup is read there).

- notebook pods (``component: singleuser-server``): kind ``server``, the user from
  kubespawner's ``hub.jupyter.org/username`` annotation (or label), environment, size
  and GPU from oggmhub's ``oggmhub.org/*`` labels;
- Dask pods (``oggmhub.org/owner-pod``): kind ``dask``, charged to the user of the
  notebook pod that owns them;
- tool-task Job pods (``oggmhub.org/task-run``): kind ``task``, their ``oggmhub.org/user``.

CPU-seconds are the pod's CPU request × its lifetime (measured CPU needs a metrics
server), GiB-hours its memory limit × lifetime, GPU-hours its GPU limit × lifetime. A
record is keyed by the pod's uid: collected again, it is replaced, never added; a pod
that vanished from the API before it was seen ending closes at its last sighting.
"""

from __future__ import annotations

import time
from datetime import datetime

from oggmhub.session.quantities import parse_memory

OWNER_LABEL = "oggmhub.org/owner-pod"
USERNAME = "hub.jupyter.org/username"


def _epoch(text):
    if not text:
        return None
    if isinstance(text, datetime):
        return text.timestamp()
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()


def _cpu(value):
    value = str(value)
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def _resources(spec):
    cpu = mem = gpus = 0.0
    for container in spec.get("containers") or ():
        res = container.get("resources") or {}
        requests, limits = res.get("requests") or {}, res.get("limits") or {}
        cpu += _cpu(requests.get("cpu") or limits.get("cpu") or 0)
        mem += parse_memory(str(limits.get("memory") or requests.get("memory") or 0))
        gpus += sum(int(v) for k, v in limits.items() if k.endswith("/gpu"))
    return cpu, mem, int(gpus)


def _stopped(pod):
    status = pod.get("status") or {}
    meta = pod.get("metadata") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        ends = [_epoch((c.get("state") or {}).get("terminated", {}).get("finishedAt"))
                for c in status.get("containerStatuses") or ()]
        ends = [e for e in ends if e]
        return max(ends) if ends else _epoch(meta.get("deletionTimestamp")) or time.time()
    return _epoch(meta.get("deletionTimestamp"))


def pod_records(pods, now=None, cohorts=None, projects=None):
    """Records (dicts for :meth:`~oggmhub.usage.store.UsageStore.put`) of the oggmhub pods
    among ``pods`` (API dicts). ``cohorts``/``projects`` map a user to what they charge."""
    now = time.time() if now is None else now
    cohorts, projects = cohorts or {}, projects or {}
    owners = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        if (meta.get("labels") or {}).get("component") == "singleuser-server":
            owners[meta.get("name")] = (meta.get("annotations") or {}).get(USERNAME) or meta["labels"].get(USERNAME)
    out = []
    for pod in pods:
        meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
        labels = meta.get("labels") or {}
        if labels.get("component") == "singleuser-server":
            kind, user = "server", owners.get(meta.get("name"))
        elif OWNER_LABEL in labels:
            kind, user = "dask", owners.get(labels[OWNER_LABEL]) or labels[OWNER_LABEL]
        elif "oggmhub.org/task-run" in labels:
            kind, user = "task", labels.get("oggmhub.org/user")
        else:
            continue
        if not user:
            continue
        start = _epoch(status.get("startTime")) or _epoch(meta.get("creationTimestamp")) or now
        stop = _stopped(pod)
        cpu, mem, gpus = _resources(spec)
        seconds = max(0.0, (stop or now) - start)
        out.append({
            "id": f"pod:{meta.get('uid') or meta.get('namespace', '') + '/' + meta.get('name', '')}",
            "kind": kind, "user": user, "cohort": cohorts.get(user, ""), "project": projects.get(user, ""),
            "environment": labels.get("oggmhub.org/environment", ""), "size": labels.get("oggmhub.org/size", ""),
            "cpu_limit": cpu, "mem_limit": mem, "gpus": gpus, "start": start, "stop": stop,
            "updated": stop or now, "cpu_seconds": cpu * seconds, "source": "pod",
        })
    return out


def collect(store, pods, now=None, cohorts=None, projects=None):
    """Write the records of ``pods`` (replacing earlier ones of the same pods) and close the
    open pod records whose pod is gone. The records written."""
    now = time.time() if now is None else now
    records = pod_records(pods, now, cohorts, projects)
    seen = {r["id"] for r in records}
    for record in records:
        store.put(record)
    for left in store.records(open_only=True, now=now):
        if left["source"] == "pod" and left["id"] not in seen:
            store.close(left["id"], left["updated"])
    return records


async def list_pods(core_v1, namespace):
    """The namespace's pods as API dicts (kubernetes_asyncio's ``CoreV1Api``)."""
    result = await core_v1.list_namespaced_pod(namespace, _preload_content=False)
    import json

    return json.loads(await result.read())["items"]
