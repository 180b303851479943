"""Hub accounts, for both backends: sign-up with admin approval (NativeAuthenticator, on
JupyterHub 6), ``c.JupyterHub.authenticator_class = "oggmhub.accounts.LocalHubAuthenticator"``
on the local hub and in the chart's values (helm-values/oggmhub.yaml).

The first admin's password is created on the hub's first start and printed to the
operator once; it is never a default, never in docs or code, and never written to disk
in clear (NativeAuthenticator keeps a bcrypt hash in the hub's database).

A student who signs up with a cohort's join code (the optional ``join_code`` field, or
``/hub/signup?join_code=CODE``) during the cohort's window is approved at once and lands
in the cohort. A wrong or expired code, or a full cohort, is refused with the reason and
creates no account at all.

A username whose folders would be another user's (:mod:`oggmhub.username_clash`) is
refused everywhere an account is made: the sign-up form (with or without a join code)
says so, and so does the admin's ``POST /hub/api/users`` (:meth:`validate_username`).
"""

from __future__ import annotations

import secrets
import sys

import bcrypt
from jupyterhub import orm
from jupyterhub.utils import maybe_future
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator import handlers as native_handlers
from nativeauthenticator.orm import UserInfo

from oggmhub import username_clash
from oggmhub.cohorts import powers
from oggmhub.cohorts import store as cohort_store
from oggmhub.cohorts.model import CohortError, JoinError
from oggmhub.errors import UserFacingError

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

    def render_template(self, name, sync=False, **ns):
        if name == "native-login.html":  # the same form, beside the hub's welcome (oggmhub/welcome.py)
            name = "oggmhub-native-login.html"
        return super().render_template(name, sync=sync, **ns)


class SignUpHandler(native_handlers.SignUpHandler):
    """NativeAuthenticator's sign-up, with an optional cohort join code."""

    def render_template(self, name, sync=False, **ns):
        if name == "signup.html":  # the same form, with the join code field
            name = "oggmhub-signup.html"
            ns.setdefault("join_code", self.get_argument("join_code", ""))
            # where to go after logging in (a launch link): kept through the form, this hub only
            ns.setdefault("next_url", self.get_next_url(default="") if self.get_argument("next", "") else "")
        return super().render_template(name, sync=sync, **ns)

    async def _refuse(self, message, code, username):
        self.set_status(400)
        html = await self.render_template("signup.html", alert="alert-danger", result_message=message,
                                          join_code=code, username=username)
        self.finish(html)

    async def post(self):
        code = self.get_body_argument("join_code", "").strip()
        username = self.authenticator.normalize_username(self.get_body_argument("username", ""))
        if self.authenticator.enable_signup:
            other = username_clash.clash(self.db, username)
            if other is not None:
                self.log.warning("Sign-up of %r refused: its folders would be %r's", username, other)
                message = f"Sign-up refused: {username_clash.message(username, other)}. No account was created."
                return await self._refuse(message, code, username)
        if not code or not self.authenticator.enable_signup:
            return await super().post()
        password = self.get_body_argument("signup_password", strip=False)
        message = None
        try:
            group, cohort = cohort_store.find_by_join_code(self.db, code)
        except JoinError as e:
            message = f"Sign-up refused: {e}. No account was created."
        else:
            if password != self.get_body_argument("signup_password_confirmation", strip=False):
                message = "Your password did not match the confirmation. Please try again."
            elif self.authenticator.user_exists(username) or _someone_elses(self.db, username, cohort):
                message = f"The username {username!r} is already in use. Please choose another."
        if message is None:
            message = self._join(username, password, group, cohort)
        if message is not None:
            return await self._refuse(message, code, username)
        else:
            title = f" ({cohort.title})" if cohort.title else ""
            html = await self.render_template(
                "signup.html", alert="alert-success", join_code="",
                result_message=f"Welcome to cohort {cohort.name}{title}! You can now log in.",
            )
        self.finish(html)

    def _join(self, username, password, group, cohort):
        """Create the approved account and its cohort membership; None, or why not (nothing created)."""
        email = self.get_body_argument("email", "", strip=False)
        info = self.authenticator.create_user(username, password, email=email, is_authorized=True)
        if info is None:
            return (f"Sign-up refused: the username must not contain spaces, commas or slashes, and the "
                    f"password needs at least {self.authenticator.minimum_password_length} characters "
                    "and must not be a common one. No account was created.")
        try:
            cohort_store.join(self.db, cohort.name, username)
        except CohortError as e:  # filled up meanwhile, or a username a group cannot hold
            self.db.delete(info)
            self.db.commit()
            return f"Sign-up refused: {e}. No account was created."
        except Exception:
            self.db.rollback()
            self.db.delete(info)
            self.db.commit()
            raise
        self.log.info("%s signed up with the join code of cohort %s", username, cohort.name)
        powers.audit(self.log, username, "joined with the join code", cohort.name, [username])
        return None


def _someone_elses(db, username, cohort):
    """True if hub user ``username`` exists (with no password yet) outside ``cohort``: a
    join code never hands over an admin's, an organiser's or another cohort's account."""
    user = orm.User.find(db, username)
    return user is not None and cohort.group not in {g.name for g in user.groups}


class LocalHubAuthenticator(NativeAuthenticator):
    """NativeAuthenticator that creates each configured admin's credentials once."""

    def validate_username(self, username):
        """NativeAuthenticator's rules, and: a new username never gets another user's folders
        (a 400 naming the clash, e.g. on the admin's ``POST /hub/api/users``)."""
        if not super().validate_username(username):
            return False
        db = getattr(self, "db", None)
        other = username_clash.clash(db, username) if db is not None else None
        if other is not None:
            self.log.warning("Username %r refused: its folders would be %r's", username, other)
            raise UserFacingError(400, username_clash.message(username, other), reason="Username not available")
        return True

    def get_handlers(self, app):
        replace = {r"/login": LoginHandler, r"/signup": SignUpHandler}
        return [(route, replace.get(route, handler)) for route, handler in super().get_handlers(app)]

    async def add_user(self, user):
        # a user just made by the admin's POST /hub/api/users/NAME (which validates after
        # creating it): refused here, and JupyterHub removes it again
        other = username_clash.clash(self.db, user.name, created=True) if user.name not in self.admin_users else None
        if other is not None:
            text = username_clash.message(user.name, other)
            self.log.warning("User %r refused: %s", user.name, text)
            raise ValueError(text)
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
