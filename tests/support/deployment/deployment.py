"""``Deployment``: oggmhub as ``helm install`` would run it, on this machine.

* the Kubernetes API: the kmock emulator (``support.kube_harness.KubeAPI``) and a kubelet,
  in a thread with its own event loop (:class:`Cluster`);
* the hub pod: the chart's own ``jupyterhub_config.py``/``z2jh.py`` run by ``jupyterhub``
  as templates/hub/deployment.yaml starts it, in a mount namespace holding the chart's
  ConfigMap and Secret, ``hub.extraFiles`` at their ``mountPath``s, the hub's volume at
  ``/srv/jupyterhub`` and what images/hub/Dockerfile copies into the image
  (:mod:`support.deployment.chart`, :mod:`support.deployment.container`);
* the proxy pod: configurable-http-proxy (node_modules) with the chart's arguments.

Kept apart from a real cluster, and said where it matters: the hub reads the API through
a kubeconfig (``KUBECONFIG``; kmock speaks plain HTTP, so no in-cluster service account),
Services are pod addresses rewritten into the hub's config (:mod:`support.deployment.network`),
the hub and proxy pods are processes, not API objects, and oggmhub is imported from the
repository (``PYTHONPATH``), as the hub image would have it installed.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import psutil

from support.kube_harness import KubeAPI, TestKubelet
from support.kube_harness.dask_operator import DaskOperator
from support.kube_harness.pods import PodRunner
from support.kube_harness.service_dns import ServiceHosts
from support.local_hub import env_cache
from support.paths import REPO

from . import chart
from .container import container_argv
from .network import Network

PROXY = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
NETWORK_FILE = f"{chart.HUB_ETC}/jupyterhub_config.d/00-test-cluster-network.py"


class Cluster:
    """The emulated API and a kubelet, run in a thread of their own (one per deployment)."""

    def __init__(self, kubelet_factory=None, controllers=None):
        self.kubelet_factory = kubelet_factory or (lambda api: TestKubelet(api))
        self.controllers_factory = controllers  # async (api) -> [objects with stop()], started before the kubelet
        self.controllers = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-cluster", daemon=True)
        self.api = self.kubelet = None

    def call(self, coro, timeout=60):
        """Run ``coro`` on the cluster's loop; its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self):
        self.thread.start()

        async def start():
            self.api = await KubeAPI().start()
            if self.controllers_factory is not None:
                self.controllers = await self.controllers_factory(self.api)
            self.kubelet = await self.kubelet_factory(self.api).start()

        self.call(start())
        return self

    def stop(self):
        async def stop():
            runner = getattr(self.kubelet, "runner", None)
            if runner is not None:
                await runner.stop_all()
            if self.kubelet is not None:
                await self.kubelet.stop()
            for controller in self.controllers:
                await controller.stop()
            if self.api is not None:
                await self.api.close()

        try:
            self.call(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def image_copies(dockerfile=REPO / "images" / "hub" / "Dockerfile"):
    """``(repository path, image path)`` of each absolute COPY in the hub image (task specs)."""
    out = []
    for line in dockerfile.read_text().splitlines():
        m = re.match(r"COPY (\S+) (/\S+)$", line)
        if m and not m.group(2).startswith("/tmp/"):
            out.append((str(REPO / m.group(1)), m.group(2)))
    return out


def admin_service(token, name="harness"):
    """Values that register a service with ``token`` allowed to manage users, their servers
    and tokens (what an operator adds for a script: ``hub.services`` and ``hub.loadRoles``)."""
    return {"hub": {"services": {name: {"apiToken": token}},
                    "loadRoles": {name: {"services": [name], "scopes": [
                        "admin:users", "admin:servers", "tokens", "list:users", "read:users", "admin-ui"]}}}}


class Deployment:
    """The chart's hub and proxy pods on ``cluster`` (started here unless given).

    ``values`` are more values files' contents, merged over helm-values/oggmhub.yaml as
    ``helm install --values`` would; ``catalog`` is the file ``--set-file`` passes;
    ``env`` adds to the hub container's environment; ``prepull`` names the catalog's
    environments whose images are built before the hub starts; ``dask_operator`` installs
    the Dask operator (its CRDs and :class:`~support.kube_harness.dask_operator.DaskOperator`)
    and oggmhub's pod admission policy.
    """

    def __init__(self, root, *values, cluster=None, namespace="oggmhub", env=None, catalog=chart.CATALOG,
                 prepull=("oggm",), dask_operator=False):
        self.root = str(root)
        self.dask_operator = dask_operator
        # the chart's cloud-metadata blocker is an init container running iptables as root:
        # here it would change this machine's firewall, so the harness turns it off
        harness = {"singleuser": {"cloudMetadata": {"blockWithIptables": False}}}
        self.values = chart.installed_values(harness, *values, catalog=catalog)
        self.namespace = namespace
        self.network = Network()
        self.cluster = cluster
        self.own_cluster = cluster is None
        self.extra_env = dict(env or {})
        self.hub_address = self.network.address(2)
        self.proxy_address = self.network.address(3)
        self.hub = self.proxy = None
        self.catalog, self.prepull = str(catalog), tuple(prepull)
        self.secret = chart.secret_data(self.values, namespace=namespace)

    async def _controllers(self, api):
        """Services by name in pods (an /etc/hosts file) and, with ``dask_operator``, the
        Dask operator's CRDs, controller and the admission policy oggmhub's Dask mode needs."""
        from support.kube_harness.oggmhub import DASK_GROUPS, declare, install_pod_policy

        hosts = ServiceHosts(api, os.path.join(self.root, "hosts"), extra={
            **{name: address for name, (address, _) in self.network.services.items()},
            **{f"{name}.{self.namespace}.svc.cluster.local": address
               for name, (address, _) in self.network.services.items()}})
        controllers = [await hosts.start()]
        # kr8s (dask-kubernetes' client) asks for /version/ with a slash; kmock answers /version
        api.emulator["get /version/"] << {"major": "1", "minor": "32", "gitVersion": "v1.32.0"}
        if self.dask_operator:
            declare(api, DASK_GROUPS, "DaskWorkerGroup")
            await install_pod_policy(api)
            controllers.append(await DaskOperator(api).start())
        return controllers

    def _kubelet(self, api):
        """A kubelet whose pods run as processes, on this deployment's addresses."""
        # pods' users (uid 1000) read their kubeconfig by its path: a folder they can reach
        # (the test's own tmp folder is root's only)
        self.kubeconfigs = tempfile.mkdtemp(prefix="oggmhub-kubeconfigs-")
        os.chmod(self.kubeconfigs, 0o755)

        def kubeconfig(ns):
            path = api.write_kubeconfig(os.path.join(self.kubeconfigs, ns), ns)
            os.chmod(path, 0o644)
            return path

        runner = PodRunner(api, os.path.join(self.root, "node"), self.network.allocate, env_cache=env_cache("accounts"),
                           hosts=os.path.join(self.root, "hosts"), kubeconfig=kubeconfig)
        kubelet = TestKubelet(api, on_start=runner.on_start, on_stop=runner.on_stop)
        kubelet.runner = runner
        return kubelet

    def _prepull(self):
        """Build the ``prepull`` environments' images before the hub starts, as the chart's
        image puller hook pulls them before an upgrade: a first build (minutes) is then not
        inside a user's start, which singleuser.startTimeout bounds."""
        from oggmhub.catalog import load_catalog

        catalog = load_catalog(self.catalog)
        runner = getattr(self.cluster.kubelet, "runner", None)
        for name in self.prepull if runner is not None else ():
            runner.resolve_image(catalog.environments[name].image.ref)

    @property
    def url(self):
        """Where users reach the hub: the proxy's public port."""
        return f"http://{self.proxy_address}:8000"

    @property
    def api(self):
        return self.cluster.api

    def hub_log(self):
        with open(os.path.join(self.root, "hub.log"), errors="replace") as f:
            return f.read()

    def proxy_log(self):
        with open(os.path.join(self.root, "proxy.log"), errors="replace") as f:
            return f.read()

    def start(self, timeout=120):
        net = self.network
        net.add_service("hub", self.hub_address, {8081: 8081, 10101: 10101})
        net.add_service("proxy-api", self.proxy_address, {8001: 8001})
        net.add_service("proxy-public", self.proxy_address, {80: 8000})
        if self.cluster is None:
            self.cluster = Cluster(self._kubelet, self._controllers).start()
        self._prepull()
        self._start_proxy()
        self._start_hub()
        self._wait(timeout)
        return self

    def _start_proxy(self):
        args = chart.chp_args(self.values, f"http://{self.hub_address}:8081")
        args = [str(PROXY), *args[1:]]
        args = [f"--ip={self.proxy_address}" if a == "--ip=" else f"--api-ip={self.proxy_address}"
                if a == "--api-ip=" else a for a in args]
        env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": self.secret["hub.config.ConfigurableHTTPProxy.auth_token"]}
        self._proxy_log = open(os.path.join(self.root, "proxy.log"), "wb")
        self.proxy = subprocess.Popen(args, env=env, stdout=self._proxy_log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def _start_hub(self):
        files = chart.hub_files(self.values, self.secret)
        files[NETWORK_FILE] = (self.network.cluster_network_config(self.hub_address), 0o644)
        # the hub pod's service account, as Kubernetes mounts it: kubespawner names user
        # namespaces after the namespace read there ({hubnamespace}-{username}); the API
        # itself is reached through KUBECONFIG (no KUBERNETES_SERVICE_HOST: kmock is plain HTTP)
        files[f"{SERVICE_ACCOUNT}/namespace"] = (self.namespace, 0o644)
        files[f"{SERVICE_ACCOUNT}/token"] = ("kmock-test-token", 0o644)
        fs = os.path.join(self.root, "hub-pod")
        chart.write_files(fs, files)
        pvc = os.path.join(self.root, "hub-db-dir")  # the hub's PersistentVolumeClaim
        os.makedirs(pvc, exist_ok=True)
        folders = sorted({os.path.dirname(path) for path in files})
        folders = [f for f in folders if not any(f.startswith(other + "/") for other in folders)]
        binds = [(os.path.join(fs, f.lstrip("/")), f, True) for f in folders]
        binds.append((pvc, "/srv/jupyterhub", False))
        binds += [(source, target, True) for source, target in image_copies()]
        kubeconfig = self.cluster.api.write_kubeconfig(os.path.join(self.root, "kubeconfig"), self.namespace)
        env = chart.hub_env(self.values, self.secret, self.namespace, {
            "hub": (self.hub_address, 8081), "proxy-api": (self.proxy_address, 8001),
            "proxy-public": (self.proxy_address, 80)})
        env.update({"PATH": os.environ["PATH"], "HOME": "/root", "LANG": "C.UTF-8", "KUBECONFIG": kubeconfig,
                    "PYTHONPATH": str(REPO), **self.extra_env})
        command = [sys.executable, "-m", *chart.hub_command(self.values)]
        argv = container_argv(binds, command, cwd="/srv/jupyterhub", env=env, spec_dir=self.root)
        self._hub_log = open(os.path.join(self.root, "hub.log"), "wb")
        self.hub = subprocess.Popen(argv, stdout=self._hub_log, stderr=subprocess.STDOUT, start_new_session=True)

    def _wait(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in (("hub", self.hub), ("proxy", self.proxy)):
                if proc.poll() is not None:
                    raise RuntimeError(f"the {name} pod's process exited ({proc.returncode}):\n"
                                       + (self.hub_log() if name == "hub" else self.proxy_log())[-4000:])
            try:
                with urllib.request.urlopen(f"{self.url}/hub/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the hub did not answer through the proxy within {timeout} s:\n{self.hub_log()[-4000:]}")

    def stop(self):
        # everything of the hub pod goes with it, as with a pod: the hub starts its managed
        # services (idle culler, tasks) in sessions of their own, out of its process group
        pod = _descendants(self.hub)
        for proc in (self.hub, self.proxy):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in (self.hub, self.proxy):
            if proc is None:
                continue
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for child in pod:
            try:
                child.kill()
            except psutil.Error:
                pass  # already gone
        for log in ("_hub_log", "_proxy_log"):
            if hasattr(self, log):
                getattr(self, log).close()
        if self.own_cluster and self.cluster is not None:
            self.cluster.stop()
        if getattr(self, "kubeconfigs", None):
            shutil.rmtree(self.kubeconfigs, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()


def _descendants(proc):
    """The processes below ``proc`` (a Popen), to end with it; none once it has gone."""
    if proc is None or proc.poll() is not None:
        return []
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        return []
