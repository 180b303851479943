"""Tool tasks: Slicer CLIs and Fiji scripts an environment offers, run headless as forms
and REST jobs on the user's data, on Dask (locally) or as Kubernetes Jobs. See docs/tasks.md."""
