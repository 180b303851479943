"""oggmhub deployed as the zero-to-jupyterhub chart would deploy it, on one machine
(test equipment): :class:`Deployment` (the hub and proxy pods, the emulated API),
:mod:`.chart` (what the chart puts in the hub pod), :mod:`.container` (a pod's
filesystem view, in a mount namespace), :mod:`.network` (pod addresses, Services)."""

from .deployment import Cluster, Deployment, admin_service

__all__ = ["Cluster", "Deployment", "admin_service"]
