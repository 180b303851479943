"""oggmhub's Kubernetes spawner (installed as ``oggmhub.spawner``).

Select it in jupyterhub_config.py with::

    c.JupyterHub.spawner_class = "oggmhub.spawner.OGGMHubSpawner"
"""

from .kube import OGGMHubSpawner

__all__ = ["OGGMHubSpawner"]
