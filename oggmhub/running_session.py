"""What a user's running server is (environment, size, GPU, datasets), for the hub's pages.

``/hub/home`` (oggmhub/templates/home.html) shows it beside the Stop button:
:func:`describe_server` is a template variable (``oggmhub_running``) that JupyterHub calls
with the page's user (see :func:`oggmhub.hub.configure_hub`). A server started before a hub restart has no choice in
memory yet: it is resolved again from the ``user_options`` the hub's database kept.
"""

from __future__ import annotations

from oggmhub.choice import ChoiceError, resolve_choice


def describe_server(user):
    """``{"environment", "size", "gpu", "datasets", "project"}`` of ``user``'s running default server
    (display names), or None."""
    spawner = getattr(user, "spawner", None) if user is not None else None
    if spawner is None or not getattr(spawner, "active", False):
        return None
    choice = getattr(spawner, "choice", None)
    catalog = getattr(spawner, "catalog", None)
    if choice is None and catalog is not None and getattr(spawner, "user_options", None):
        try:
            choice = resolve_choice(catalog, dict(spawner.user_options))
        except (ChoiceError, TypeError, ValueError):
            choice = None
    if choice is None:
        return None
    return {
        "environment": choice.environment.display_name,
        "size": choice.size.display_name,
        "gpu": choice.gpu.display_name if choice.gpu else None,
        "datasets": [getattr(d, "display_name", None) or d.name for d in choice.datasets],
        "project": (getattr(spawner, "user_options", None) or {}).get("project") or None,  # usage (#25)
    }
