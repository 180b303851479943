"""The Kubernetes backend: a KubeSpawner subclass and pure functions that build its
manifests (catalog entry in, manifest dict out). Importing this package imports no
kubespawner; :mod:`.spawner` does."""
