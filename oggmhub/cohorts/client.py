"""A client of the hub's REST API for cohorts, used by ``oggmhub cohort`` and the cohort page.

The cohort endpoints (``/hub/api/cohorts/...``, served inside the hub by
:mod:`oggmhub.cohorts.routes`) create, show and change cohorts; pre-warm uses
JupyterHub's own ``POST /hub/api/users/NAME/server``, at most ``concurrency`` starts at
a time, with a callback for progress. Every call authenticates with an API token
(an organiser's or an admin's; see ``/hub/token``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tarfile
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPRequest


class HubAPIError(Exception):
    """An error answer from the hub, with its status and message."""

    def __init__(self, status, message, problems=None):
        self.status = status
        self.message = message
        self.problems = list(problems or [message])
        super().__init__(f"{message} (HTTP {status})")


def api_url(hub_url):
    """The REST API root for a hub URL (``http://host:8000``, ``.../hub/`` or ``.../hub/api``)."""
    url = hub_url.rstrip("/")
    if url.endswith("/hub/api"):
        return url
    if url.endswith("/hub"):
        return url + "/api"
    return url + "/hub/api"


class HubClient:
    """Async calls to a hub's REST API with an API token."""

    def __init__(self, hub_url, token, timeout=60, max_clients=64):
        if not token:
            raise HubAPIError(401, "no API token: set $JUPYTERHUB_API_TOKEN or pass --token (make one at /hub/token)")
        self.api = api_url(hub_url)
        self.token = token
        self.timeout = timeout
        self.http = AsyncHTTPClient(force_instance=True, max_clients=max_clients)

    def close(self):
        self.http.close()

    async def request(self, method, path, body=None, ok=(200, 201, 202, 204), **kwargs):
        """``method`` ``path`` (under the API root); the decoded JSON answer (or None)."""
        headers = {"Authorization": f"token {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        request = HTTPRequest(
            self.api + path, method=method, headers=headers, body=data,
            allow_nonstandard_methods=True, request_timeout=kwargs.pop("timeout", self.timeout), **kwargs,
        )
        try:
            response = await self.http.fetch(request, raise_error=False)
        except (OSError, asyncio.TimeoutError) as e:
            raise HubAPIError(0, f"cannot reach the hub at {self.api}: {e}") from None
        if response.code == 599:
            raise HubAPIError(0, f"cannot reach the hub at {self.api}: {response.error}")
        if response.code not in ok:
            raise HubAPIError(response.code, _message(response), _problems(response))
        if kwargs.get("streaming_callback") or not response.body:
            return None
        return json.loads(response.body)


def _message(response):
    try:
        return json.loads(response.body).get("message") or response.reason
    except (ValueError, AttributeError, TypeError):
        return response.reason or f"HTTP {response.code}"


def _problems(response):
    try:
        return json.loads(response.body).get("problems")
    except (ValueError, AttributeError, TypeError):
        return None


def _cohort(name):
    return f"/cohorts/{quote(name, safe='')}"


# --- cohorts -------------------------------------------------------------------------------


async def list_cohorts(client):
    return (await client.request("GET", "/cohorts"))["cohorts"]


async def create(client, spec):
    """Create a cohort from ``spec``; the answer holds ``cohort`` and, if asked, ``join_code``."""
    return await client.request("POST", "/cohorts", spec)


async def show(client, name):
    return await client.request("GET", _cohort(name))


async def add_members(client, name, usernames=(), csv_text=None, csv_name="members.csv"):
    """Add members by name and/or from a CSV's text (all or nothing): ``{added, already}``."""
    body = {"usernames": list(usernames)}
    if csv_text is not None:
        body.update(csv=csv_text, csv_name=csv_name)
    return await client.request("POST", _cohort(name) + "/members", body)


async def remove_members(client, name, usernames):
    return await client.request("DELETE", _cohort(name) + "/members", {"usernames": list(usernames)})


async def change_organisers(client, name, add=(), remove=()):
    """Add and remove organisers (hub admins only); the new list."""
    body = {"add": list(add), "remove": list(remove)}
    return (await client.request("POST", _cohort(name) + "/organisers", body))["organisers"]


async def new_join_code(client, name):
    return (await client.request("POST", _cohort(name) + "/join-code", {}))["join_code"]


async def close(client, name):
    """Close the cohort: its members' servers stop and their spawns are refused from now on."""
    return await client.request("POST", _cohort(name) + "/close", {}, timeout=max(client.timeout, 600))


async def export(client, name, dest):
    """Archive the members' homes on the hub, download the archive to ``dest`` and check it.

    Returns the export record (``id``, ``sha256``, ``bytes``, ``members``); the download
    is verified against the hub's SHA-256 and read through as a tar archive.
    """
    record = (await client.request("POST", _cohort(name) + "/exports", {}, timeout=max(client.timeout, 3600)))["export"]
    partial = f"{dest}.part"
    digest = hashlib.sha256()
    try:
        with open(partial, "wb") as f:
            def chunk(data):
                f.write(data)
                digest.update(data)

            await client.request("GET", f"{_cohort(name)}/exports/{record['id']}", streaming_callback=chunk,
                                 timeout=max(client.timeout, 3600))
        if digest.hexdigest() != record["sha256"]:
            raise HubAPIError(0, f"the downloaded archive does not match the hub's (SHA-256 {record['sha256']}); try again")
        with tarfile.open(partial, "r:gz") as archive:
            for _ in archive:
                pass
        os.replace(partial, dest)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return record


async def delete_homes(client, name, export_id, sha256):
    """Delete the members' homes; the hub refuses unless export ``export_id`` with ``sha256`` succeeded."""
    return await client.request("POST", _cohort(name) + "/delete-homes", {"export": export_id, "sha256": sha256})


# --- pre-warm ---------------------------------------------------------------------------------


@dataclass
class PrewarmResult:
    members: list
    ready: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)  # username -> message
    seconds: float = 0.0

    def summary(self):
        return {"members": len(self.members), "ready": len(self.ready), "lost": len(self.members) - len(self.ready),
                "failed": dict(self.failed), "all_ready_s": round(self.seconds, 2)}


async def prewarm(client, members, options, concurrency=10, timeout=900, progress=None, poll=0.5):
    """Start every member's default server with ``options``, at most ``concurrency`` at once.

    Servers already running count as ready. ``progress(event)`` is called after each
    change with ``{"member", "state", "message", "ready", "failed", "total", "elapsed"}``.
    Returns a :class:`PrewarmResult`; it never raises for one member's failure.
    """
    members = list(members)
    result = PrewarmResult(members=members)
    semaphore = asyncio.Semaphore(max(1, concurrency))
    t0 = time.monotonic()

    def report(member, state, message=""):
        if progress is not None:
            progress({"member": member, "state": state, "message": message, "ready": len(result.ready),
                      "failed": len(result.failed), "total": len(members),
                      "elapsed": round(time.monotonic() - t0, 2)})

    async def one(member):
        async with semaphore:
            report(member, "starting")
            try:
                await asyncio.wait_for(_start_and_wait(client, member, options, poll), timeout)
            except asyncio.TimeoutError:
                result.failed[member] = f"not ready within {timeout} s"
                report(member, "failed", result.failed[member])
            except HubAPIError as e:
                result.failed[member] = e.message
                report(member, "failed", e.message)
            else:
                result.ready.append(member)
                report(member, "ready")

    await asyncio.gather(*(one(m) for m in members))
    result.seconds = time.monotonic() - t0
    return result


async def _start_and_wait(client, member, options, poll):
    path = f"/users/{quote(member, safe='')}"
    model = await client.request("GET", path)
    server = (model.get("servers") or {}).get("")
    if server and server.get("ready"):
        return
    while not model.get("pending") and not server:
        try:
            await client.request("POST", path + "/server", options)
            break
        except HubAPIError as e:
            if e.status == 429:  # the hub's concurrent_spawn_limit: wait and try again
                await asyncio.sleep(poll * 4)
                continue
            if e.status != 400 or "already" not in e.message:  # started meanwhile: wait for it
                raise
            break
    delay = poll
    while True:
        model = await client.request("GET", path)
        server = (model.get("servers") or {}).get("")
        if server and server.get("ready"):
            return
        if not model.get("pending") and not server:
            raise HubAPIError(500, "the server stopped while starting; see the hub's log")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 3.0)
