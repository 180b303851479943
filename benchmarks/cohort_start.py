"""Pre-warm a cohort's servers through a real hub, on both backends, in one run.

1. Kubernetes: a JupyterHub process with OGGMHubSpawner against the kmock Kubernetes API
   emulator and the test kubelet (run by this script); a cohort of ``--k8s-members``
   (default 100) is created and pre-warmed through the hub's REST API, exactly as
   ``oggmhub cohort prewarm`` does. A pod's server is stood in for by one small HTTP
   endpoint (the test kubelet starts no processes), so this measures the hub, the
   spawner and the Kubernetes API side.
2. Local: the local hub (``oggmhub hub``) with LocalEnvSpawner; ``--local-members``
   (default 20) real JupyterLab servers, in the cached OGGM environment, each pulling the
   cohort's materials (a local git repository) with nbgitpuller.

Run from the repository root:

    python benchmarks/cohort_start.py [--k8s-members 100] [--local-members 20] [--concurrency 10]

The last line is JSON with members, ready, lost, all_ready_s and hub_peak_rss_mb (the
largest of the two hub processes), then each backend's own figures. Target: every member
ready, none lost.
"""

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from support.kube_harness import KubeAPI, TestKubelet  # noqa: E402
from support.local_hub import LocalHub, free_port  # noqa: E402
from oggmhub.cohorts import client as cohort_api  # noqa: E402
from oggmhub.cohorts.model import now_utc  # noqa: E402
from oggmhub.backends.local.environments import default_root  # noqa: E402

CATALOG = os.path.join(REPO, "hub_config", "catalog.yaml")
PROXY = os.path.join(REPO, "node_modules", ".bin", "configurable-http-proxy")

KUBE_HUB_CONFIG = """
import os
c = get_config()
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.ConfigurableHTTPProxy.pid_file = os.path.join({tmp!r}, "proxy.pid")
c.JupyterHub.db_url = "sqlite:///" + os.path.join({tmp!r}, "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join({tmp!r}, "cookie_secret")
c.JupyterHub.cleanup_servers = False
c.JupyterHub.concurrent_spawn_limit = 200
c.JupyterHub.authenticator_class = "null"
c.JupyterHub.spawner_class = "oggmhub.spawner.OGGMHubSpawner"
c.Catalog.path = {catalog!r}  # every part of the hub: spawner, cohorts, welcome, launch
c.OGGMHubSpawner.namespace = "default"
c.OGGMHubSpawner.port = {server_port}
c.OGGMHubSpawner.start_timeout = 300
c.OGGMHubSpawner.http_timeout = 120
c.OGGMHubSpawner.k8s_api_request_timeout = 10
c.OGGMHubSpawner.k8s_api_request_retry_timeout = 60
c.JupyterHub.services = [{{"name": "bench", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{
    "name": "bench", "services": ["bench"],
    "scopes": ["admin:groups", "admin:users", "servers", "read:users", "list:users"],
}}]
from oggmhub.hub import configure_hub
configure_hub(c)
"""


def peak_rss_mb(pid):
    """The process's peak resident set size (the kernel's VmHWM), in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def cohort_spec(name, materials=None):
    now = now_utc()
    spec = {"name": name, "start": (now - timedelta(minutes=5)).isoformat(),
            "end": (now + timedelta(days=1)).isoformat(), "environments": ["oggm=small"], "join_code": True}
    if materials:
        spec["materials"] = {"repo": materials}
    return spec


async def prewarm_cohort(client, name, members, spec, concurrency, label):
    """Create the cohort, add its members, pre-warm; the PrewarmResult."""
    await cohort_api.create(client, spec)
    await cohort_api.add_members(client, name, members)
    last = [0.0]

    def progress(event):
        done = event["ready"] + event["failed"]
        if event["state"] == "failed" or time.monotonic() - last[0] > 5 or done == event["total"]:
            last[0] = time.monotonic()
            print(f"  {label}: {event['ready']}/{event['total']} ready, {event['failed']} failed "
                  f"({event['elapsed']:.1f} s)" + (f" {event['member']}: {event['message']}" if event["message"] else ""),
                  flush=True)

    return await cohort_api.prewarm(client, members, {"profile": "oggm"}, concurrency, 600, progress)


async def server_stand_in(port):
    """One HTTP endpoint answering for every pod's server (the test kubelet runs none)."""
    from jupyterhub import __version__
    from tornado import web

    class Any(web.RequestHandler):
        def get(self, path):
            self.set_header("X-JupyterHub-Version", __version__)
            self.finish({"status": "ok"})

    server = web.Application([(r"/(.*)", Any)]).listen(port, address="127.0.0.1")
    return server


async def kubernetes_run(members, concurrency):
    print(f"Kubernetes (kmock + test kubelet): a hub pre-warms {members} members", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        async with KubeAPI() as api, TestKubelet(api):
            kubeconfig = api.write_kubeconfig(os.path.join(tmp, "kubeconfig"))
            server_port, port, hub_port = free_port(), free_port(), free_port(2)
            stand_in = await server_stand_in(server_port)
            token = secrets.token_hex(16)
            config = os.path.join(tmp, "jupyterhub_config.py")
            with open(config, "w") as f:
                f.write(KUBE_HUB_CONFIG.format(
                    port=port, hub_port=hub_port, proxy_api_port=hub_port + 1, proxy=PROXY, tmp=tmp,
                    catalog=CATALOG, server_port=server_port, token=token))
            log = open(os.path.join(tmp, "hub.log"), "wb")
            hub = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", config], cwd=tmp, stdout=log,
                                   stderr=subprocess.STDOUT, env={**os.environ, "KUBECONFIG": kubeconfig},
                                   start_new_session=True)
            client = cohort_api.HubClient(f"http://127.0.0.1:{port}", token, max_clients=concurrency * 2 + 4)
            try:
                await wait_for_hub(client, hub, os.path.join(tmp, "hub.log"))
                names = [f"k8s-student{i:03d}" for i in range(members)]
                result = await prewarm_cohort(client, "k8s-class", names, cohort_spec("k8s-class", "https://example.org/tutorials.git"),
                                              concurrency, "kubernetes")
                running = sum(1 for p in api.objects("pods") if (p.get("status") or {}).get("phase") == "Running")
                rss = peak_rss_mb(hub.pid)
            finally:
                client.close()
                hub.send_signal(signal.SIGTERM)
                try:
                    hub.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(hub.pid, signal.SIGKILL)
                    hub.wait()
                log.close()
                stand_in.stop()
            if result.failed:
                print(open(os.path.join(tmp, "hub.log")).read()[-3000:])
    return {**result.summary(), "pods_running": running, "hub_peak_rss_mb": rss}


async def wait_for_hub(client, proc, log_path, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the hub exited:\n{open(log_path).read()[-3000:]}")
        try:
            await client.request("GET", "/")
            return
        except cohort_api.HubAPIError:
            await asyncio.sleep(0.3)
    raise RuntimeError(f"the hub did not answer within {timeout} s:\n{open(log_path).read()[-3000:]}")


def materials_repo(root):
    src = os.path.join(root, "src")
    subprocess.run(["git", "init", "-q", "-b", "main", src], check=True)
    with open(os.path.join(src, "01-intro.ipynb"), "w") as f:
        f.write('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    git = ["git", "-C", src, "-c", "user.email=b@example.org", "-c", "user.name=b"]
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "materials"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", src, os.path.join(root, "tutorials.git")], check=True)
    return "file://" + os.path.join(root, "tutorials.git")


async def local_run(members, concurrency):
    print(f"Local backend: the local hub pre-warms {members} members (real JupyterLab servers)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        repo = materials_repo(tmp)
        hub = LocalHub(os.path.join(tmp, "hub"), env={"OGGMHUB_ENV_CACHE": str(default_root())}).start()
        try:
            admin = hub.admin()
            token = hub.api(admin, "POST", "/users/admin/tokens", json={"note": "benchmark"}).json()["token"]
            client = cohort_api.HubClient(hub.url, token)
            try:
                names = [f"student{i:02d}" for i in range(members)]
                result = await prewarm_cohort(client, "local-class", names, cohort_spec("local-class", repo),
                                              concurrency, "local")
            finally:
                client.close()
            rss = peak_rss_mb(hub.proc.pid)
            pulled = sum(os.path.exists(os.path.join(hub.data_dir, "homes", n, "tutorials", "01-intro.ipynb"))
                         for n in names)
            if result.failed:
                print(hub.log()[-3000:])
        finally:
            hub.stop(servers=True, timeout=120)
    return {**result.summary(), "materials_pulled": pulled, "hub_peak_rss_mb": rss}


async def main(args):
    kube = await kubernetes_run(args.k8s_members, args.k8s_concurrency)
    local = await local_run(args.local_members, args.concurrency)
    for label, r in (("Kubernetes", kube), ("local", local)):
        print(f"{label}: {r['ready']} of {r['members']} ready, {r['lost']} lost, all ready in {r['all_ready_s']} s; "
              f"hub peak RSS {r['hub_peak_rss_mb']} MiB")
    for r in (kube, local):
        r.pop("failed") if not r["failed"] else None
    summary = {
        "members": kube["members"] + local["members"],
        "ready": kube["ready"] + local["ready"],
        "lost": kube["lost"] + local["lost"],
        "all_ready_s": round(kube["all_ready_s"] + local["all_ready_s"], 2),
        "hub_peak_rss_mb": max(kube["hub_peak_rss_mb"] or 0, local["hub_peak_rss_mb"] or 0),
        "kubernetes": kube,
        "local": local,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k8s-members", type=int, default=100, help="members pre-warmed on Kubernetes (kmock)")
    parser.add_argument("--k8s-concurrency", type=int, default=20, help="servers starting at once on Kubernetes")
    parser.add_argument("--local-members", type=int, default=20, help="members pre-warmed on the local backend")
    parser.add_argument("--concurrency", type=int, default=5, help="servers starting at once on the local backend")
    asyncio.run(main(parser.parse_args()))
