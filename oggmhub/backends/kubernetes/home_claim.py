"""A user's home claim on Kubernetes follows their quota (the catalog's ``storage``
section: :mod:`oggmhub.storage.quotas`).

A new claim is made at the quota (kubespawner's ``storage_capacity``, set per start); an
existing smaller claim is grown before the pod starts (a merge patch of
``spec.resources.requests.storage``), which Kubernetes allows where the claim's storage
class has ``allowVolumeExpansion``; where it refuses, the claim stays as it is, the
server still starts, and the admin is told in the log.
Kubernetes never shrinks a claim: a smaller quota applies to new claims only.
"""

from __future__ import annotations

from kubernetes_asyncio.client.exceptions import ApiException

from oggmhub.session.quantities import parse_memory
from oggmhub.storage.quotas import human


def resize_plan(requested, quota):
    """``"grow"``, ``"keep"`` or ``"larger"`` (the claim exceeds the quota and stays)
    for a claim requesting ``requested`` (a quantity) under ``quota`` bytes."""
    current = parse_memory(requested)
    return "grow" if current < quota else "larger" if current > quota else "keep"


async def follow_quota(api, namespace, name, quota, log):
    """Grow the existing claim ``namespace/name`` to ``quota`` bytes if it is smaller; a
    sentence saying so when that was refused (logged for the admin), else None."""
    try:
        claim = await api.read_namespaced_persistent_volume_claim(name, namespace)
    except ApiException as e:
        if e.status == 404:
            return None  # kubespawner makes it, at the quota
        raise
    requested = ((claim.spec.resources.requests or {}) if claim.spec and claim.spec.resources else {}).get("storage")
    if requested is None or resize_plan(requested, quota) != "grow":
        if requested is not None and resize_plan(requested, quota) == "larger":
            log.info("home claim %s/%s requests %s, more than its quota %s: Kubernetes never shrinks a claim",
                     namespace, name, requested, human(quota))
        return None
    body = {"spec": {"resources": {"requests": {"storage": str(quota)}}}}
    try:
        await api.patch_namespaced_persistent_volume_claim(name, namespace, body,
                                                           _content_type="application/merge-patch+json")
    except ApiException as e:
        log.warning("home claim %s/%s stays at %s: growing it to %s (its quota) was refused (%s %s); its "
                    "storage class must allow volume expansion (allowVolumeExpansion: true)",
                    namespace, name, requested, human(quota), e.status, e.reason)
        return (f"Your home stays at {human(parse_memory(requested))}: the cluster refused to grow it to "
                f"{human(quota)}; the hub's admins have been told.")
    log.info("home claim %s/%s grown from %s to %s", namespace, name, requested, human(quota))
    return None
