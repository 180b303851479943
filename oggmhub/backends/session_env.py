"""The session's environment, assembled once from a validated choice, for both backends.

Both spawners call :func:`session_environment` from their ``apply_choice`` and lay the
result over their configured ``environment``; what differs between the backends is a
parameter, not a second recipe:

* ``mount_root``: the local backend mounts datasets under a per-user folder, so the
  datasets' ``mount_path`` (and every catalog variable pointing into one, e.g.
  ``OGGM_DOWNLOAD_CACHE=/data/oggm-mirror``) is rewritten under it; in a pod the catalog
  paths are the real ones;
* ``scratch_dir``, ``dask_registry``: the local backend's per-user scratch space and Dask
  registry (a pod has neither);
* ``tmp_dir``: the local backend's private temporary folder of the server (a pod has its
  own ``/tmp``): ``TMPDIR``, ``TEMP`` and ``TMP`` point at it, and catalog variables
  under the machine's shared ``/tmp`` (e.g. ``OGGM_EXTRACT_DIR=/tmp/oggm-extract``) are
  moved under it, so no two accounts share a folder there;
* ``dask_backend``: where the session's Dask clusters run (``kubernetes`` adds the pod's
  name, uid and namespace through the downward API, for the clusters' owner);
* ``image``: the image that runs, when it is not the environment's (a GPU variant's own
  build);
* ``escape``: kubespawner expands ``{placeholders}`` in environment values, so the
  Kubernetes backend passes a function keeping oggmhub's values literal (the catalog's
  own variables are left to that expansion, as configured values are).

The variables are named in :mod:`oggmhub.session.env`.
"""

from __future__ import annotations

from oggmhub.session import dask_kubernetes, dask_limits, datasets, tutorials
from oggmhub.session import env as session_vars

DASK_BACKENDS = ("local", "kubernetes")


TMP_VARIABLES = ("TMPDIR", "TEMP", "TMP")
SHARED_TMP = "/tmp"


def session_environment(choice, *, mount_root=None, scratch_dir=None, dask_backend="local",
                        dask_registry=None, image=None, escape=None, tutorials_by_hub=False, tmp_dir=None):
    """The variables a session of ``choice`` (an :class:`oggmhub.choice.SpawnChoice`) gets.

    In order, later ones winning: the environment's catalog variables, what the session
    is (:meth:`~oggmhub.choice.SpawnChoice.session_env`), its datasets
    (:func:`oggmhub.session.datasets.session_env`), its Dask limits and dashboard
    (:func:`oggmhub.session.dask_limits.session_env`), then the backend's own. A cohort's
    variables are added later, by ``apply_cohort``. Pure: no I/O, the choice unchanged.
    """
    if dask_backend not in DASK_BACKENDS:
        raise ValueError(f"dask_backend {dask_backend!r}: use one of {', '.join(DASK_BACKENDS)}")
    hub = {
        **choice.session_env(),
        **datasets.session_env(choice.datasets, mount_root=mount_root),
        **dask_limits.session_env(choice.environment, choice.size, dask_backend),
    }
    if image is not None:
        hub[session_vars.IMAGE] = image
    if dask_backend == "kubernetes":
        hub[session_vars.DASK_BACKEND] = "kubernetes"
        hub.update(dask_kubernetes.downward_env())
    if dask_registry is not None:
        hub[session_vars.DASK_REGISTRY] = dask_registry
    if scratch_dir is not None:
        hub[session_vars.SCRATCH] = scratch_dir
    if tutorials_by_hub:  # the local hub merged them; the image's start script leaves them
        hub[session_vars.TUTORIALS] = tutorials.BY_HUB
    catalog = choice.environment.env
    if tmp_dir is not None:  # the catalog's paths under the shared /tmp move into the private one
        catalog = {**private_tmp_env(catalog, tmp_dir), **{name: tmp_dir for name in TMP_VARIABLES}}
    env = {**catalog, **(escape(hub) if escape else hub)}
    if mount_root is not None:
        # paths into catalog mount points (e.g. OGGM_DOWNLOAD_CACHE) point at the local mounts
        env = datasets.localize_env(env, choice.datasets, mount_root)
    return env


def private_tmp_env(env, tmp_dir):
    """``env`` with every value under the shared ``/tmp`` moved under ``tmp_dir``
    (``/tmp/oggm-extract`` -> ``<tmp_dir>/oggm-extract``)."""
    out = {}
    for name, value in env.items():
        if isinstance(value, str) and (value == SHARED_TMP or value.startswith(SHARED_TMP + "/")):
            value = tmp_dir.rstrip("/") + value[len(SHARED_TMP):]
        out[name] = value
    return out
