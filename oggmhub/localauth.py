"""Accounts for the local hub: sign-up with admin approval (NativeAuthenticator).

The first admin's password is created on the hub's first start and printed to the
operator once; it is never a default, never in docs or code, and never written to disk
in clear (NativeAuthenticator keeps a bcrypt hash in the hub's database).
"""

from __future__ import annotations

import secrets
import sys

import bcrypt
from jupyterhub.utils import maybe_future
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator import handlers as native_handlers
from nativeauthenticator.orm import UserInfo

BANNER = """
==============================================================================
  oggmhub: the first admin account was created. This is shown only once.

      username: {username}
      password: {password}

  Log in at the hub, then change it under /hub/change-password.
  Approve sign-ups at /hub/authorize.
==============================================================================
"""


class _NoStatsd:
    """JupyterHub 6 dropped statsd; NativeAuthenticator 1.3 still times logins with it."""

    def timer(self, name):
        return self

    def start(self):
        return self

    def stop(self, send=True):
        pass


class LoginHandler(native_handlers.LoginHandler):
    """NativeAuthenticator's login page, made to work with JupyterHub 6."""

    statsd = _NoStatsd()

    def _render(self, login_error=None, username=None, **_):
        # JupyterHub 6 passes extra template variables when it shows a login error
        return super()._render(login_error=login_error, username=username)


class LocalHubAuthenticator(NativeAuthenticator):
    """NativeAuthenticator that creates each configured admin's credentials once."""

    def get_handlers(self, app):
        return [(r"/login", LoginHandler) if route == r"/login" else (route, handler)
                for route, handler in super().get_handlers(app)]

    async def add_user(self, user):
        await maybe_future(super().add_user(user))
        if user.name in self.admin_users and not self.user_exists(user.name):
            self.create_admin_credentials(user.name)

    def create_admin_credentials(self, username):
        """Store a random password for ``username`` and tell the operator, once."""
        password = secrets.token_urlsafe(12)
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
        self.db.add(UserInfo(username=username, password=hashed, is_authorized=True))
        self.db.commit()
        print(BANNER.format(username=username, password=password), file=sys.stdout, flush=True)
        self.log.warning("Created the first admin account %r; its password was printed once", username)
