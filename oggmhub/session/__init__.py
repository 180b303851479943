"""Code that runs inside a user's server (the notebook, its kernels, its Dask workers).

Nothing here imports hub-side code (no jupyterhub, no kubespawner, no catalog parser):
the environments' images install oggmhub for these modules alone. The hub side may
import from here (the variables it hands a session are named in :mod:`.env`).
"""
