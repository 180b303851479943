"""Kept for existing ``jupyterhub_config.py`` files and Helm values:
``c.JupyterHub.spawner_class = "oggmhub.spawner.OGGMHubSpawner"``.

The spawner lives in :mod:`oggmhub.backends.kubernetes.spawner`.
"""

from oggmhub.backends.kubernetes.spawner import OGGMHubSpawner

__all__ = ["OGGMHubSpawner"]
