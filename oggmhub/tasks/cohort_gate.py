"""Whether a user's cohorts let them run tasks now: the rule that refuses their server
starts (:func:`oggmhub.cohorts.model.member_policy`), applied to runs.

A member whose cohorts are all closed or outside their window gets the policy's refusal
(naming each cohort and why); a user in no cohort, or in one open cohort, may run. The
service reads the user's groups and their cohort records from the hub's API with its own
token (scopes ``read:users:groups`` and ``read:groups``, given by
:func:`oggmhub.tasks.service.configure`).
"""

from __future__ import annotations

import json
import os
from types import SimpleNamespace
from urllib.parse import quote

from oggmhub.cohorts.model import cohort_name, member_policy, user_cohorts

SCOPES = ["read:users:groups", "read:groups"]


class HubUnreachable(RuntimeError):
    pass


async def _get(path):
    from tornado.httpclient import AsyncHTTPClient, HTTPClientError

    api = os.environ.get("JUPYTERHUB_API_URL", "").rstrip("/")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    try:
        response = await AsyncHTTPClient().fetch(f"{api}{path}", headers={"Authorization": f"token {token}"},
                                                 request_timeout=10)
    except HTTPClientError as e:
        if e.code == 403:  # fails closed: a member of a closed cohort must not run for want of a role
            raise HubUnreachable("the tasks service may not read users' cohorts: give it the scopes "
                                 f"{' and '.join(SCOPES)} (a role with services: [tasks])") from None
        raise HubUnreachable(f"the hub's API did not answer {path}: {e}") from None
    except OSError as e:
        raise HubUnreachable(f"the hub's API did not answer {path}: {e}") from None
    return json.loads(response.body)


async def cohort_names(username):
    """The names of ``username``'s open cohorts (none when not under a hub)."""
    if not os.environ.get("JUPYTERHUB_API_URL"):
        return []
    user = await _get(f"/users/{quote(username, safe='')}")
    names = []
    for name in user.get("groups") or ():
        if cohort_name(name):
            group = await _get(f"/groups/{quote(name, safe='')}")
            cohorts = user_cohorts(SimpleNamespace(groups=[SimpleNamespace(name=name, properties=group.get("properties") or {})]))
            names += [c.name for c in cohorts if c.is_open()]
    return names


async def refusal(username):
    """Why ``username``'s cohorts refuse a run now (a sentence), or None."""
    if not os.environ.get("JUPYTERHUB_API_URL"):
        return None  # not under a hub (a test's service): no cohorts
    user = await _get(f"/users/{quote(username, safe='')}")
    groups = []
    for name in user.get("groups") or ():
        if cohort_name(name):
            group = await _get(f"/groups/{quote(name, safe='')}")
            groups.append(SimpleNamespace(name=name, properties=group.get("properties") or {}))
    policy = member_policy(user_cohorts(SimpleNamespace(groups=groups)))
    if policy is None or not policy.refusal:
        return None
    return policy.refusal.replace("Your server can only start", "Your tasks can only run", 1)
