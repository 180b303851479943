"""Start-to-JupyterLab on the Kubernetes deployment vs the local hub, and users starting at once.

1. Kubernetes: the chart's own hub config with helm-values/oggmhub.yaml, the proxy, the API
   emulator and a test kubelet whose pods run as processes (tests/support/deployment; the
   OGGM environment built from images/oggm/, built first if needed and not timed). One user
   starts OGGM alone, then ``--users`` (default 20) start at once.
2. Local: the local hub (``oggmhub hub``, LocalEnvSpawner) on the same machine, one user
   starting OGGM alone, timed the same way.

Each start is timed from the REST request (what the spawn page's Start button sends) until
JupyterLab's page answers through the proxy with the user's token. Run from the repository
root, as root (pods use mount namespaces and system accounts):

    python benchmarks/k8s_deployment.py [--users 20] [--rounds 3]

The last line is JSON with users, ready, lost (never ready, or failed), median_start_s (of
the users starting at once), single_start_s and local_start_s (medians of --rounds lone
starts) and ratio_vs_local (single_start_s / local_start_s).
"""

import argparse
import concurrent.futures
import json
import os
import secrets
import statistics
import sys
import tempfile
import time

import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from support.deployment import Deployment, admin_service  # noqa: E402
from support.local_hub import LocalHub  # noqa: E402


class Hub:
    """A hub's REST API with an admin token; timed starts."""

    def __init__(self, url, token):
        self.url, self.token = url, token

    def api(self, method, path, **kwargs):
        return requests.request(method, f"{self.url}/hub/api{path}", headers={"Authorization": f"token {self.token}"},
                                timeout=120, **kwargs)

    def start(self, name, timeout):
        """Seconds from the start request to JupyterLab answering through the proxy; None if never."""
        if self.api("GET", f"/users/{name}").status_code == 404:
            self.api("POST", f"/users/{name}")
        token = self.api("POST", f"/users/{name}/tokens", json={"note": "benchmark"}).json()["token"]
        began = time.monotonic()
        r = self.api("POST", f"/users/{name}/server", json={"profile": "oggm"})
        if r.status_code not in (201, 202):
            print(f"  {name}: start refused: {r.status_code} {r.text[:200]}", flush=True)
            return None
        while time.monotonic() - began < timeout:
            server = self.api("GET", f"/users/{name}").json()["servers"].get("")
            if server and server["ready"]:
                lab = requests.get(f"{self.url}/user/{name}/lab", headers={"Authorization": f"token {token}"},
                                   timeout=60)
                if lab.status_code == 200:
                    return time.monotonic() - began
            elif not server or not server["pending"]:
                print(f"  {name}: the start failed", flush=True)
                return None
            time.sleep(0.25)
        return None

    def stop(self, name, timeout=120):
        self.api("DELETE", f"/users/{name}/server")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.api("GET", f"/users/{name}").json()["servers"]:
                return
            time.sleep(0.25)


def lone_starts(hub, prefix, rounds, timeout):
    times = []
    for i in range(rounds):
        seconds = hub.start(f"{prefix}{i}", timeout)
        hub.stop(f"{prefix}{i}")
        print(f"  {prefix}{i}: {seconds if seconds is None else round(seconds, 2)} s", flush=True)
        if seconds is not None:
            times.append(seconds)
    return times


def kubernetes_run(args):
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory() as tmp, Deployment(tmp, admin_service(token)) as d:
        hub = Hub(d.url, token)
        print("Kubernetes (the chart's hub config, pods as processes): warming up (builds OGGM if needed)", flush=True)
        hub.start("warmup", 1800)
        hub.stop("warmup")
        print(f"Kubernetes: {args.rounds} lone starts", flush=True)
        single = lone_starts(hub, "lone", args.rounds, args.timeout)
        print(f"Kubernetes: {args.users} users at once", flush=True)
        names = [f"user{i:02d}" for i in range(args.users)]
        with concurrent.futures.ThreadPoolExecutor(args.users) as pool:
            times = list(pool.map(lambda n: hub.start(n, args.timeout), names))
        running = len(d.api.objects("pods", d.namespace))
        with concurrent.futures.ThreadPoolExecutor(args.users) as pool:
            list(pool.map(hub.stop, names))
        deadline = time.monotonic() + 60
        while (d.api.objects("pods", d.namespace) or d.cluster.kubelet.runner.pods) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = len(d.api.objects("pods", d.namespace)) + len(d.cluster.kubelet.runner.pods)
    ready = [t for t in times if t is not None]
    return {"single": single, "ready": ready, "lost": len(times) - len(ready), "pods_running": running, "left": left}


def local_run(args):
    from oggmhub.backends.local.environments import default_root

    print(f"Local hub: {args.rounds} lone starts", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        local = LocalHub(os.path.join(tmp, "hub"), env={"OGGMHUB_ENV_CACHE": str(default_root())}).start()
        try:
            admin = local.admin()
            token = local.api(admin, "POST", "/users/admin/tokens", json={"note": "benchmark"}).json()["token"]
            hub = Hub(local.url, token)
            hub.start("warmup", 1800)
            hub.stop("warmup")
            return lone_starts(hub, "lone", args.rounds, args.timeout)
        finally:
            local.stop(servers=True, timeout=120)


def main(args):
    kube = kubernetes_run(args)
    local = local_run(args)
    median = lambda xs: round(statistics.median(xs), 2) if xs else None  # noqa: E731
    summary = {
        "users": args.users, "ready": len(kube["ready"]), "lost": kube["lost"],
        "median_start_s": median(kube["ready"]),
        "max_start_s": round(max(kube["ready"]), 2) if kube["ready"] else None,
        "single_start_s": median(kube["single"]), "local_start_s": median(local),
        "ratio_vs_local": round(median(kube["single"]) / median(local), 2) if kube["single"] and local else None,
        "pods_running_at_peak": kube["pods_running"], "left_after_stop": kube["left"], "load_avg_1m": os.getloadavg()[0],
    }
    print(f"Kubernetes: {summary['ready']} of {args.users} ready at once (median {summary['median_start_s']} s, "
          f"max {summary['max_start_s']} s), {summary['lost']} lost, {kube['left']} pods left after stopping; "
          f"a lone start {summary['single_start_s']} s vs {summary['local_start_s']} s on the local hub "
          f"(ratio {summary['ratio_vs_local']})")
    print(json.dumps(summary))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20, help="users starting OGGM at once on Kubernetes")
    parser.add_argument("--rounds", type=int, default=3, help="lone starts timed on each backend")
    parser.add_argument("--timeout", type=float, default=600, help="seconds a start may take before it counts as lost")
    main(parser.parse_args())
