"""oggmhub: a JupyterHub of ready-made research environments.

One declarative catalog (:mod:`oggmhub.catalog`) describes the environments, their sizes
and GPU variants, the datasets and the cohorts; the spawners (:mod:`oggmhub.spawner` on
Kubernetes) turn a user's validated choice (:mod:`oggmhub.choice`) into a running server.
"""

__version__ = "0.1.0"
