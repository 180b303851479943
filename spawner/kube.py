"""``OGGMHubSpawner``: kubespawner, driven by the catalog.

What it adds to ``KubeSpawner``:

* the picker (environment, then size and GPU variant) from the catalog, rendered by
  kubespawner's own profile form and validated on the hub before anything is created;
* the choice merged into the base configuration (:mod:`oggmhub.spawner.pod`), with a
  persistent per-user home volume that no choice can drop;
* safe defaults in the user container, checked on every pod before it is created.
"""

from __future__ import annotations

import asyncio
import copy
import json

from kubernetes_asyncio.client.exceptions import ApiException
from kubespawner import KubeSpawner
from traitlets import Unicode, default

from oggmhub.errors import SpawnFailed
from oggmhub.picker import CatalogPickerMixin

from .pod import CHOICE_TRAITS, check_user_container, choice_settings


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

SAFE_CONTAINER_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


class OGGMHubSpawner(CatalogPickerMixin, KubeSpawner):
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

        The only container of a user's pod with FUSE privileges; built from
        images/mounter/. The user's container sees the mounts, never the privileges.""",
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
        return False

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

    _base_settings = None

    def apply_choice(self, choice):
        """Merge the choice into the configured base (snapshotted once, reused after)."""
        if self._base_settings is None:
            self._base_settings = {
                name: copy.deepcopy(getattr(self, name)) for name in CHOICE_TRAITS
            }
        for name, value in choice_settings(
            choice, self._base_settings, self.home_mount_path, self.dataset_mounter_image
        ).items():
            setattr(self, name, value)

    async def _start(self):
        await self.ensure_choice_applied()
        # refuse an unsafe configuration before anything (even the home volume) is created
        check_user_container(self.api.api_client.sanitize_for_serialization(await self.get_pod_manifest()))
        try:
            return await super()._start()
        except Exception as error:
            message = start_failure_message(error)
            if message is None:
                raise
            self.log.error("Start of %s failed: %s", self._log_name, error)
            await self._remove_pod_after_failure()
            raise SpawnFailed(message) from error

    async def _remove_pod_after_failure(self):
        """Delete a pod a failed start may have created (a hung create may have landed)."""
        try:
            await self.stop(now=True)
        except Exception:  # the API may still be failing; JupyterHub's stop() retries
            self.log.exception("Could not remove the pod of %s's failed start", self._log_name)

    async def load_user_options(self):
        """Called by KubeSpawner's start(); the choice replaces profile overrides."""
        await self.ensure_choice_applied()

    async def progress(self):
        if self.choice is not None:
            yield {"progress": 1, "message": f"Starting {self.choice.describe()}"}
        async for event in super().progress():
            yield event
