"""Where the hub's authenticator used to live: kept so that existing configurations naming
``oggmhub.backends.local.accounts.LocalHubAuthenticator`` keep working. It is
:mod:`oggmhub.accounts` (both backends use it)."""

from oggmhub.accounts import BANNER, LocalHubAuthenticator  # noqa: F401

__all__ = ["BANNER", "LocalHubAuthenticator"]
