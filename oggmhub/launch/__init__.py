"""Launch links: from a dataset's DOI, URL or catalog name to JupyterLab next to the data.

- :mod:`oggmhub.identifiers` (a foundation module, used by the catalog too) reads an
  identifier in any common spelling;
- :mod:`~oggmhub.launch.resolution` finds it in the catalog (or, where the admin allows
  it, a public source by pattern) with the environments that may mount it;
- :mod:`~oggmhub.launch.request` checks a launch URL's parameters and says where it lands;
- :mod:`~oggmhub.launch.handlers` and ``templates/`` are the hub's pages and API
  (``/hub/launch``, ``/hub/datasets``, ``/hub/api/datasets/resolve``), registered by
  :func:`oggmhub.hub.configure_hub`; :mod:`~oggmhub.launch.snippets` writes badges.
"""
