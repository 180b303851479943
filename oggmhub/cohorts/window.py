"""Stop cohort members' servers when their cohort's window ends (a hub-managed service).

Spawners refuse a member's start outside the window; this service ends the servers that
were already running when the window ended (or the cohort was closed), so a class's
servers do not run on until the idle culler finds them. A member with another cohort
that is open, or not open yet, keeps their server.

:func:`oggmhub.hub.configure_hub` registers it as the ``cohort-window``
service with the scopes it needs; run by hand with ``python -m oggmhub.cohorts.window``
and ``JUPYTERHUB_API_TOKEN``/``JUPYTERHUB_API_URL`` set.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from urllib.parse import quote

from oggmhub.cohorts.client import HubAPIError, HubClient
from oggmhub.cohorts.model import Cohort, cohort_name, is_cohort_record, now_utc

log = logging.getLogger("oggmhub.cohorts.window")

#: what the service's token may do: see groups (cohort records) and users, stop servers
SCOPES = ["list:users", "read:users", "list:groups", "read:groups", "read:servers", "delete:servers"]


def servers_to_stop(groups, running, now=None):
    """``{username: reason}`` for the running users all of whose cohorts have ended or
    been closed.

    ``groups`` are hub group models (``name``, ``users``, ``properties``); ``running`` the
    names of users with a running or starting default server. A user in no cohort, or in
    one that is open or not open yet, keeps their server.
    """
    now = now or now_utc()
    cohorts_of = {}
    for group in groups:
        if cohort_name(group["name"]) and is_cohort_record(group.get("properties")):
            cohort = Cohort.from_properties(group["properties"])
            for member in group.get("users") or ():
                cohorts_of.setdefault(member, []).append(cohort)
    stop = {}
    for name in running:
        cohorts = cohorts_of.get(name)
        if cohorts and all(c.closed or now >= c.end for c in cohorts):
            stop[name] = "; ".join(c.closed_reason(now) for c in cohorts)
    return stop


async def _all(client, path):
    """Every item of a paginated list endpoint of the hub's API."""
    items, offset = [], 0
    while True:
        sep = "&" if "?" in path else "?"
        page = await client.request("GET", f"{path}{sep}offset={offset}&limit=200")
        items.extend(page)
        if len(page) < 200:
            return items
        offset += len(page)


async def check_once(client, now=None):
    """Stop the servers whose cohort window has ended; the ``{username: reason}`` stopped."""
    groups = await _all(client, "/groups")
    users = await _all(client, "/users?state=active")
    # a server already stopping is left to finish (and not reported again)
    running = [u["name"] for u in users
               if "" in (u.get("servers") or {}) and u["servers"][""].get("pending") != "stop"]
    stop = servers_to_stop(groups, running, now or now_utc())
    for name, reason in stop.items():
        log.info("stopping %s's server: %s", name, reason)
        try:
            await client.request("DELETE", f"/users/{quote(name)}/server", ok=(202, 204))
        except HubAPIError as e:
            if e.status != 400:  # 400: it is stopping already
                log.warning("could not stop %s's server: %s", name, e)
    return stop


async def run(client, interval):
    """Check every ``interval`` seconds until cancelled; a failed check is logged, not fatal."""
    while True:
        try:
            await check_once(client)
        except HubAPIError as e:
            log.warning("cohort window check failed: %s", e)
        await asyncio.sleep(interval)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m oggmhub.cohorts.window",
        description="Stop cohort members' servers when their cohort's window has ended.",
    )
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between checks (default 60)")
    parser.add_argument("--once", action="store_true", help="check once and exit")
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error(f"--interval must be a positive number of seconds, not {args.interval}")
    # the hub stops its services with SIGINT first: honour it even where a parent shell
    # started the hub with SIGINT ignored (a background job), so shutdown is not held up
    signal.signal(signal.SIGINT, signal.default_int_handler)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s cohort-window] %(message)s")
    api_url = os.environ.get("JUPYTERHUB_API_URL")
    if not api_url:
        parser.error("JUPYTERHUB_API_URL is not set (the hub sets it for its services)")
    try:
        asyncio.run(_serve(api_url, os.environ.get("JUPYTERHUB_API_TOKEN"), args))
    except KeyboardInterrupt:  # the hub (or Ctrl-C) stopping it: a normal end, no traceback
        return 0


async def _serve(api_url, token, args):
    client = HubClient(api_url, token)  # made inside the loop it runs on
    try:
        await (check_once(client) if args.once else run(client, args.interval))
    finally:
        client.close()


if __name__ == "__main__":
    main()
