"""Dask on the local backend: limits from the catalog, real LocalClusters within a
session's allotment, OGGM runs across workers, and a real local hub whose stopped server
leaves no Dask process behind (checked by PID)."""

import asyncio
import json
import os
import time

import dask
import psutil
import pytest
import requests
import yaml

from oggmhub.backends.local.environments import default_root
from oggmhub.catalog import load_catalog
from oggmhub.session import dask as oggmhub_dask
from oggmhub.session import dask_limits, dask_local
from oggmhub.session.dask_limits import (
    ClusterRequest,
    DaskLimitError,
    DaskLimits,
    Usage,
)
from support.kernels import execute
from support.local_hub import LocalHub
from support.paths import CATALOG, REPO

GIB = 1024**3


def session(catalog, env="oggm", size="medium", registry=None, **extra):
    """The variables a local session of ``env`` at ``size`` gets from LocalEnvSpawner."""
    environment = catalog.environments[env]
    chosen = environment.sizes[size]
    return {
        "OGGMHUB_ENVIRONMENT": env, "OGGMHUB_SIZE": size,
        "OGGMHUB_CPU_LIMIT": f"{chosen.cpu_limit:g}", "OGGMHUB_MEM_LIMIT": str(chosen.mem_limit),
        **dask_limits.session_env(environment, chosen, "local"),
        **({"OGGMHUB_DASK_REGISTRY": str(registry)} if registry else {}),
        **extra,
    }


def alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# --- limits (pure) ----------------------------------------------------------------------------


def test_limits_come_from_the_environment_then_the_size_then_the_cohort(catalog):
    oggm = catalog.environments["oggm"]
    small = dask_limits.limits_for(oggm, oggm.sizes["small"])
    assert (small.clusters, small.workers, small.cores, small.memory, small.idle_timeout) == (2, 8, 8, 32 * GIB, 1800)
    assert small.sources["workers"] == "the catalog's environments.oggm.dask.workers"
    assert small.sources["gpus"] == "oggmhub's default"
    large = dask_limits.limits_for(oggm, oggm.sizes["large"])
    assert (large.workers, large.cores, large.clusters) == (16, 16, 2)
    assert large.sources["cores"] == "the catalog's environments.oggm.sizes.large.dask.cores"
    fiji = catalog.environments["fiji"]  # no dask: block, oggmhub's defaults
    assert dask_limits.limits_for(fiji, fiji.default_size) == DaskLimits()
    # a cohort's dask_workers limit overrides the catalog's workers
    env = {**dask_limits.session_env(oggm, oggm.sizes["small"]), "OGGMHUB_MAX_DASK_WORKERS": "3"}
    limits = dask_limits.from_env(env)
    assert limits.workers == 3 and limits.sources["workers"] == "your cohort's dask_workers limit"
    assert dask_limits.DaskLimits.from_json(small.to_json()) == small


def test_requests_over_a_limit_name_it(catalog):
    limits = dask_limits.within_allotment(dask_limits.limits_for(catalog.environments["oggm"],
                                                                 catalog.environments["oggm"].sizes["medium"]),
                                          2, 8 * GIB, "medium")
    dask_limits.check(ClusterRequest(2, 1, 2 * GIB), limits)  # fits
    cases = [
        (ClusterRequest(3, 1, GIB), Usage(), "cores",
         "3 workers x 1 core = 3 cores is over your limit of 2 cores (cores, set by this session's CPU allotment, "
         "size 'medium'). Ask for fewer or smaller workers; nothing was started."),
        (ClusterRequest(1, 1, 9 * GIB), Usage(), "memory",
         "1 worker x 9 GiB = 9 GiB is over your limit of 8 GiB (memory, set by this session's memory allotment"),
        (ClusterRequest(1, 1, GIB), Usage(clusters=2, workers=1, cores=1, memory=GIB), "clusters",
         "one more cluster is over your limit of 2 clusters, as your other clusters already hold 2 clusters"),
        (ClusterRequest(1, 1, GIB, gpu_workers=1, gpus_per_worker=1), Usage(), "gpus",
         "1 worker x 1 GPU = 1 GPU is over your limit of 0 GPUs"),
    ]
    for request, usage, name, message in cases:
        with pytest.raises(DaskLimitError) as info:
            dask_limits.check(request, limits, usage)
        assert info.value.limit == name and message in str(info.value)
    off = dask_limits.DaskLimits(clusters=0)
    with pytest.raises(DaskLimitError, match=r"Dask clusters are off for this session \(clusters is 0"):
        dask_limits.check(ClusterRequest(1, 1, GIB), off)
    assert dask_limits.max_workers(limits, Usage(cores=1), 1, GIB) == 1


def test_catalog_dask_blocks_are_validated(tmp_path):
    data = yaml.safe_load(CATALOG.read_text())
    data["environments"]["oggm"]["dask"] = {"clusters": -1, "memory": "lots", "workrs": 2}
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    from oggmhub.catalog import CatalogError

    with pytest.raises(CatalogError) as info:
        load_catalog(str(path))
    text = "\n".join(info.value.problems)
    assert "environments.oggm.dask.clusters: -1 is invalid: clusters is how many Dask clusters" in text
    assert "environments.oggm.dask.memory: 'lots' is invalid: a memory size" in text
    assert "environments.oggm.dask.workrs: unknown field 'workrs' (did you mean 'workers'?)" in text


# --- real LocalClusters ------------------------------------------------------------------------


def test_a_session_cluster_fits_the_allotment_and_holds_its_limits(catalog, tmp_path, monkeypatch):
    registry = tmp_path / "registry"
    env = session(catalog, "oggm", "medium", registry)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    cluster, client = oggmhub_dask.cluster(environ=env)  # as many workers as fit: 2 x 1 core
    try:
        assert client.submit(sum, range(10)).result() == 45
        info = client.scheduler_info()["workers"].values()
        assert sorted(w["nthreads"] for w in info) == [1, 1]
        assert all(w["memory_limit"] == 4 * GIB for w in info)  # 8 GiB shared by 2 workers
        # the link the session's DASK_DISTRIBUTED__DASHBOARD__LINK gives: through the user's server
        monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/")
        link = dask_limits.dashboard_env("local")["DASK_DISTRIBUTED__DASHBOARD__LINK"]
        with dask.config.set({"distributed.dashboard.link": link}):
            # the dashboard's secret prefix is part of the link (see the privacy test below)
            prefix = cluster._oggmhub_prefix
            assert prefix.startswith("/dask-") and len(prefix) == len("/dask-") + 32
            assert cluster.dashboard_link == f"/user/alice/proxy/{cluster.scheduler.http_server.port}{prefix}/status"
        [entry] = oggmhub_dask.Registry(str(registry)).entries()
        assert entry["usage"]["workers"] == 2 and len(entry["processes"]) == 2
        pids = [p for p, _ in entry["processes"]]
        # a second cluster, scaling, adapting: the same limits, counting this cluster
        children = {p.pid for p in psutil.Process().children(recursive=True)}
        with pytest.raises(DaskLimitError) as info:
            oggmhub_dask.cluster(workers=1, environ=env)
        assert info.value.limit == "cores" and "as your other clusters already hold 2 cores" in str(info.value)
        with pytest.raises(DaskLimitError, match="3 workers x 1 core = 3 cores is over your limit of 2 cores"):
            cluster.scale(3)
        with pytest.raises(DaskLimitError, match="over your limit of 2 cores"):
            cluster.adapt(maximum=5)
        assert {p.pid for p in psutil.Process().children(recursive=True)} == children  # nothing started
        adaptive = cluster.adapt(minimum=1)
        assert adaptive.maximum == 2  # clamped to what fits
        adaptive.stop()
        cluster.scale(1)
        assert Usage(**oggmhub_dask.Registry(str(registry)).entries()[0]["usage"]).workers == 1
    finally:
        client.close()
        cluster.close()
    assert oggmhub_dask.Registry(str(registry)).entries() == []
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in pids)
    assert {p.pid for p in psutil.Process().children(recursive=True)} - before <= _tracker_pids()


def test_a_session_cluster_is_private_to_whoever_holds_its_credentials(catalog, tmp_path, monkeypatch):
    """TLS with the cluster's own key: a client without it, or with credentials of its own,
    is refused; its dashboard answers only under its secret prefix (Dask's sitemap, which
    would list it, included). The session's own clients find the key in its registry
    (0600, the security loader the session's variables name)."""
    from distributed import Client
    from distributed.security import Security

    registry = tmp_path / "r"
    env = session(catalog, "oggm", "medium", registry)
    cluster, client = oggmhub_dask.cluster(workers=1, environ=env)
    try:
        [tls] = [f for f in os.listdir(registry) if f.endswith(".tls")]
        assert oct(os.stat(registry / tls).st_mode & 0o777) == "0o600"
        assert oct(os.stat(registry).st_mode & 0o777) == "0o700"
        monkeypatch.setenv("OGGMHUB_DASK_REGISTRY", str(registry))
        loader = env["DASK_DISTRIBUTED__CLIENT__SECURITY_LOADER"]
        with dask.config.set({"distributed.client.security-loader": loader}):
            with Client(cluster.scheduler_address, timeout=10) as by_address:  # as dask-labextension's snippet
                assert by_address.submit(sum, [2, 3]).result() == 5
            # another session's loader has nothing for it (Client would go without credentials)
            monkeypatch.setenv("OGGMHUB_DASK_REGISTRY", str(tmp_path / "another-session"))
            assert dask_local.load_security({"address": cluster.scheduler_address}) is None
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
        assert client.submit(sum, [1, 2]).result() == 3  # the owner's client: the cluster's credentials
        plain = cluster.scheduler_address.replace("tls://", "tcp://")
        # (raw comms: a Client whose constructor failed can hang this process when collected)
        for address, security in ((plain, Security()), (cluster.scheduler_address, Security()),
                                  (cluster.scheduler_address, Security.temporary())):
            with pytest.raises(Exception):
                asyncio.run(_identity(address, security))
        assert asyncio.run(_identity(cluster.scheduler_address, cluster.security))["type"] == "Scheduler"
        port = cluster.scheduler.http_server.port
        base = f"http://127.0.0.1:{port}"
        for path in ("/", "/status", "/sitemap.json", "/info/main/workers.html", "/health", "/metrics"):
            assert requests.get(base + path, allow_redirects=False, timeout=10).status_code == 404, path
        own = requests.get(base + cluster._oggmhub_prefix + "/status", timeout=10)
        assert own.status_code == 200 and "Dask" in own.text
        assert cluster._oggmhub_prefix not in requests.get(base + "/sitemap.json", timeout=10).text
    finally:
        client.close()
        cluster.close()


async def _identity(address, security):
    """The scheduler's identity over one raw comm with ``security``'s client credentials."""
    from distributed.comm import connect

    comm = await connect(address, timeout=5, **security.get_connection_args("client"))
    try:
        await comm.write({"op": "identity", "reply": True})
        return await comm.read()
    finally:
        comm.abort()


def _tracker_pids():
    """multiprocessing's resource tracker stays for the life of this process (not Dask's)."""
    return {p.pid for p in psutil.Process().children() if "resource_tracker" in " ".join(p.cmdline())}


def test_an_idle_cluster_shuts_itself_down(catalog, tmp_path):
    registry = tmp_path / "registry"
    env = session(catalog, "oggm", "medium", registry)
    cluster = oggmhub_dask.new_cluster(workers=1, idle_timeout=1, environ=env)
    pids = [p for p, _ in oggmhub_dask.Registry(str(registry)).entries()[0]["processes"]]
    try:
        deadline = time.monotonic() + 20
        while (alive(pids[0]) or oggmhub_dask.Registry(str(registry)).entries()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(pids[0]), "the idle cluster's worker is still running"
        assert oggmhub_dask.Registry(str(registry)).entries() == []  # no longer counts
    finally:
        cluster.close()
    with pytest.raises(DaskLimitError, match=r"an idle timeout of never is over your limit of 1800 s"):
        oggmhub_dask.new_cluster(workers=1, idle_timeout=0, environ=env)


def test_dashboard_links_go_through_the_users_server(tmp_path, monkeypatch):
    link = dask_limits.dashboard_env("local")["DASK_DISTRIBUTED__DASHBOARD__LINK"]
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    with dask.config.set({"distributed.dashboard.link": link}):
        oggmhub_dask._check_dashboard_link()  # outside a hub server: Dask's own link, not a KeyError
        assert dask.config.get("distributed.dashboard.link") == "{scheme}://{host}:{port}/status"
    monkeypatch.setenv("OGGMHUB_NAMESPACE", "oggmhub-alice")
    allowed = oggmhub_dask.proxy_host_allowed
    assert allowed(None, "oggmhub-1a2b3c4d-scheduler.oggmhub-alice") and allowed(None, "localhost")
    assert not allowed(None, "oggmhub-1a2b3c4d-scheduler.oggmhub-bob")
    assert not allowed(None, "kubernetes.default.svc") and not allowed(None, "169.254.169.254")


def test_backend_follows_the_session(tmp_path):
    assert oggmhub_dask.backend_name({}) == "local"
    assert oggmhub_dask.backend_name({"OGGMHUB_DASK_BACKEND": "kubernetes"}) == "kubernetes"
    with pytest.raises(oggmhub_dask.DaskStartError, match="'yarn' is not a Dask backend"):
        oggmhub_dask.backend_name({"OGGMHUB_DASK_BACKEND": "yarn"})
    with pytest.raises(oggmhub_dask.DaskStartError, match="ask the hub's admins to turn on OGGMHubSpawner.dask_kubernetes"):
        oggmhub_dask.new_cluster(environ={"OGGMHUB_DASK_BACKEND": "kubernetes"})


# --- OGGM across workers -------------------------------------------------------------------------


def _import_oggm():
    try:
        from oggm import cfg  # noqa: F401
    except ImportError as e:  # a missing OGGM is a broken test setup, never a skip
        pytest.fail(f"OGGM is not importable ({e}); install the test extra: pip install -e '.[test]' (oggm==1.6.3)")


def _marked_task(item, scale=1):
    from oggm import cfg

    return item * scale + cfg.PARAMS["oggmhub_marker"]


def test_oggm_ensembles_and_entity_tasks_run_across_workers_with_the_notebook_cfg(tmp_path):
    _import_oggm()
    from oggm import cfg

    from oggmhub.session import oggm_dask

    cfg.initialize_minimal(logging_level="WARNING")
    cfg.PARAMS["oggmhub_marker"] = 1000  # set in the notebook only
    members = oggm_dask.ensemble_members(4, years=60)
    cluster, client = oggmhub_dask.cluster(workers=2, environ={"OGGMHUB_DASK_REGISTRY": str(tmp_path)})
    try:
        parallel = oggm_dask.run_ensemble(client, members)
        hosts = client.run(lambda: __import__("os").getpid())
        assert set(client.run(lambda: __import__("oggm.cfg").cfg.PARAMS["oggmhub_marker"]).values()) == {1000}
        assert oggm_dask.run_entity_tasks(client, _marked_task, [1, 2, 3], scale=10) == [1010, 1020, 1030]
        with pytest.raises(ValueError, match="compile_everything is a global task"):
            oggm_dask.run_entity_tasks(client, _global_task(), [1])
    finally:
        client.close()
        cluster.close()
    serial = oggm_dask.run_ensemble(None, members)
    assert [r["volume_km3"] for r in parallel] == [r["volume_km3"] for r in serial]
    assert len(hosts) == 2
    volumes = [r["volume_km3"] for r in serial]
    assert volumes == sorted(volumes, reverse=True) and volumes[0] > 0  # a higher ELA, a smaller glacier


def _global_task():
    def compile_everything(gdirs):
        return None

    compile_everything.__dict__["is_global_task"] = True
    return compile_everything


# --- a real local hub: the call inside a server, and nothing left after it stops ----------------



IN_KERNEL = """
import json, os, subprocess, sys, dask, oggmhub.session.dask
cluster, client = oggmhub.session.dask.cluster()
total = client.submit(sum, range(10)).result()
# a worker started by hand, in a session of its own (as from a terminal): it must go too
extra = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
                          "--nthreads", "1"], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    oggmhub.session.dask.cluster(workers=1)
    refused = None
except oggmhub.session.dask.DaskLimitError as e:
    refused = [e.limit, str(e)]
print(json.dumps({"total": total, "kernel": os.getpid(), "link": cluster.dashboard_link,
                  "workers": [w.process.pid for w in cluster.workers.values()], "extra": extra.pid,
                  "factory": dask.config.get("labextension.factory"), "refused": refused}))
"""


def test_inside_a_local_hub_server_the_call_computes_and_stopping_leaves_no_dask_process(tmp_path):
    # the server runs this checkout's oggmhub (the cached environment may hold an older copy)
    hub = LocalHub(tmp_path / "data", env={"OGGMHUB_ENV_CACHE": str(default_root()), "PYTHONPATH": str(REPO)}).start()
    try:
        user = hub.new_user("dora", "serac-field-42")
        r = hub.api(user, "POST", "/users/dora/server", json={"profile": "oggm", "size": "medium"})
        assert r.status_code in (201, 202), r.text
        hub.wait_for_server(user, "dora")
        token = hub.api(user, "POST", "/users/dora/tokens", json={"note": "dask test"}).json()["token"]
        auth = {"Authorization": f"token {token}"}
        base = f"{hub.url}/user/dora"
        kernel = requests.post(f"{base}/api/kernels", headers=auth, json={"name": "python3"}, timeout=30)
        assert kernel.status_code == 201, kernel.text
        ws = f"ws://127.0.0.1:{hub.port}/user/dora/api/kernels/{kernel.json()['id']}/channels"
        result = json.loads(asyncio.run(execute(ws, token, IN_KERNEL)).strip().splitlines()[-1])
        assert result["total"] == 45 and len(result["workers"]) == 2  # medium: 2 CPUs, 2 workers
        assert result["refused"][0] == "cores" and "this session's CPU allotment, size 'medium'" in result["refused"][1]
        assert result["link"].startswith("/user/dora/proxy/") and result["link"].endswith("/status")
        assert result["factory"]["module"] == "oggmhub.session.dask" and result["factory"]["class"] == "new_cluster"
        # the dashboard, through the user's server (jupyter-server-proxy)
        dashboard = requests.get(f"{hub.url}{result['link']}", headers=auth, timeout=30)
        assert dashboard.status_code == 200 and "Dask" in dashboard.text
        dask_pids = [result["kernel"], *result["workers"], result["extra"]]
        assert all(alive(p) for p in dask_pids)

        r = hub.api(user, "DELETE", "/users/dora/server")
        assert r.status_code in (202, 204), r.text
        deadline = time.monotonic() + 60
        while hub.api(user, "GET", "/users/dora").json()["servers"] and time.monotonic() < deadline:
            time.sleep(0.3)
        assert [p for p in dask_pids if alive(p)] == []
    finally:
        hub.stop(servers=True)


# --- the tutorial ------------------------------------------------------------------------------

SALEM_DATA = "salem-sample-data-454bf696324000d198f574a1bf5bc56e3e489051"  # see test_notebooks.py


def test_the_oggm_dask_tutorial_runs_in_the_local_oggm_environment(catalog, tmp_path):
    import subprocess

    import nbformat

    from oggmhub.backends.local.environments import build_local_env
    from support.local_hub import fill_oggm_mirror, sample_zip

    sample_zip()  # the real glacier runs need OGGM's sample data (skips, saying so, when absent)
    mirror = tmp_path / "oggm-mirror"
    assert fill_oggm_mirror(str(mirror))
    venv = build_local_env("oggm", catalog, default_root(), progress=None)
    home = tmp_path / "home"
    shapes = home / ".salem_cache" / SALEM_DATA / "shapes" / "world_borders"
    shapes.mkdir(parents=True)
    (shapes / "world_borders.shp").touch()  # salem's sample data, which oggm's import checks
    out = tmp_path / "executed.ipynb"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OGGM", "JUPYTER", "DASK_"))}
    env.update(session(catalog, "oggm", "medium", tmp_path / "registry"), HOME=str(home),
               JUPYTERHUB_SERVICE_PREFIX="/user/tess/", OGGM_DOWNLOAD_CACHE=str(mirror),
               PYTHONPATH=str(REPO))  # this checkout's oggmhub (the cached environment may be older)
    notebook = REPO / "notebooks" / "oggm-dask.ipynb"
    proc = subprocess.run([str(venv / "bin" / "jupyter"), "execute", f"--output={out}", str(notebook)],
                          capture_output=True, text=True, timeout=300, cwd=home, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "\n".join(o.get("text", "") for o in outputs)
    assert "2 workers, 2 threads" in text and "dashboard: /user/tess/proxy/" in text
    assert "cores:    2 cores  (this session's CPU allotment, size 'medium')" in text
    assert "ELA   2800 m: volume" in text
    assert "Hintereisferner" in text and "16 climate realisations" in text
    assert "refused (workers): 1000 workers is over your limit of 8 workers" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # the glacier's ensemble, the ELA sweep
    assert not any(c.outputs for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code")
