"""Errors told to users as they are: on the spawn page and in REST API error bodies."""

from tornado import web


class UserFacingError(web.HTTPError):
    """An HTTP error whose message JupyterHub shows verbatim."""

    def __init__(self, status_code, message, reason=None):
        super().__init__(status_code, "%s", message, reason=reason)
        self.message = message
        self.jupyterhub_message = message  # what JupyterHub shows on pages and in API bodies

    def __str__(self):
        return self.message


class SpawnFailed(UserFacingError):
    """A start that failed past validation (the cluster, a mount, an environment build)."""

    def __init__(self, message):
        super().__init__(500, message, reason="Spawn failed")
