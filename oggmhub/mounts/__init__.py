"""Dataset mounts: a catalog dataset served read-only through FUSE, one process per mount.

Used wherever datasets are mounted: by the local backend (its spawner mounts a session's
datasets on the hub's machine), by the Kubernetes mount sidecar (``oggmhub datasets mount
--from-env``, :mod:`oggmhub.cli.datasets`) and by that command run by hand. Imports no
backend (an import contract, ``.importlinter``).

* :mod:`.options`: ``c.DatasetMounts``, the mount options, declared once;
* :mod:`.process`: mounting and unmounting (each mount a child process,
  ``python -m oggmhub.mounts.process serve``), and what that process runs;
* :mod:`.table`: what this machine has mounted (``/proc/self/mountinfo``);
* :mod:`.fuse_operations` + :mod:`.open_files`: the read-only FUSE operations and the
  files they read; :mod:`.block_memory`: the memory of read-ahead blocks;
* :mod:`.reachable`: whether a dataset's source answers, checked before mounting;
* :mod:`.source_links`: links in a local-folder dataset, never followed out of it;
* :mod:`.placeholders`: the stand-in mount of a dataset left out (``required: false``).
"""
