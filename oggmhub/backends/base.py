"""What a backend does with a validated choice: the interface both spawners declare.

A *choice* (:class:`oggmhub.choice.SpawnChoice`: environment, size, GPU variant, datasets) is
validated on the hub by :class:`oggmhub.picker.CatalogPickerMixin`, from the form and
the REST API alike, before a backend sees it. Then, on every spawn:

1. the picker calls :meth:`SessionBackend.apply_choice`, which sets the spawner's traits
   from the choice over the configured base (never I/O, never an earlier choice's
   leftovers), the session's variables among them (:meth:`~SessionBackend.session_environment`,
   one recipe for both backends: :func:`oggmhub.backends.session_env.session_environment`);
2. the picker adds a cohort member's limits (``apply_cohort``);
3. JupyterHub's ``start()`` runs it: the local backend builds the environment's
   virtualenv, mounts the datasets with FUSE processes (:mod:`oggmhub.mounts`) and
   starts a process; the Kubernetes backend creates the pod, whose mount sidecar
   (:mod:`oggmhub.session.mount_sidecar`) mounts them. Both mount with the same
   options, :attr:`SessionBackend.mount_options` (``c.DatasetMounts.*``).

``start``, ``stop``, ``poll`` and ``progress`` are JupyterHub's ``Spawner`` methods, which
each backend implements its own way; they are not repeated here. One rule holds for every
start without a backend having to remember it: :class:`oggmhub.picker.CatalogPickerMixin`
applies the validated choice before a backend's ``start()`` (or KubeSpawner's ``_start()``)
body runs, even when the hub's options step was skipped.

The local backend is :class:`oggmhub.backends.local.spawner.LocalEnvSpawner`, the
Kubernetes one :class:`oggmhub.backends.kubernetes.spawner.OGGMHubSpawner`.
"""

from __future__ import annotations

from oggmhub.mounts.options import DatasetMounts

# the methods a backend must implement (tests check both spawners do)
REQUIRED = ("apply_choice", "session_environment")


class SessionBackend:
    """Mixin declaring what a spawner does with a validated choice (see the module)."""

    def apply_choice(self, choice):
        """Set this spawner's settings (image or environment, resources, mounts, variables)
        from ``choice``, merged over the configured base. Pure: no I/O."""
        raise NotImplementedError

    def session_environment(self, choice):
        """The variables a session of ``choice`` gets: the one recipe
        (:func:`oggmhub.backends.session_env.session_environment`) with this backend's
        parameters."""
        raise NotImplementedError

    @property
    def mount_options(self):
        """How datasets are mounted: ``c.DatasetMounts.*``, read with this spawner as parent."""
        return DatasetMounts(parent=self)


def missing_methods(cls):
    """The :data:`REQUIRED` methods ``cls`` does not implement itself (inherits the stub of)."""
    stubs = {name: getattr(SessionBackend, name) for name in REQUIRED}
    return [name for name in REQUIRED if getattr(cls, name, None) in (None, stubs[name])
            or getattr(getattr(cls, name), "__qualname__", "").startswith(("SessionBackend.", "CatalogPickerMixin."))]
