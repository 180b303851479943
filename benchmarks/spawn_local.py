"""Local spawn latency: oggmhub's LocalEnvSpawner vs JupyterHub's SimpleLocalProcessSpawner.

Two real local hubs (JupyterHub + proxy) run side by side; both start the same
jupyterhub-singleuser from the same OGGM environment built from images/oggm/ (built
first if needed, not timed). Spawns alternate between them; each is timed from the
REST API request to the server being ready. Run from the repository root:

    python benchmarks/spawn_local.py [--spawns 10]

The last line is a JSON object with ratio_vs_simple and both medians (target <= 1.10).
oggmhub's spawns include what it does beyond SimpleLocalProcessSpawner: validating the
choice and mounting the environment's dataset (OGGM's mirror, a local folder here).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from support.local_hub import LocalHub  # noqa: E402

SIMPLE_CONFIG = """
c = get_config()
load_subconfig({main!r})
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r} + "/{{username}}"
c.SimpleLocalProcessSpawner.cmd = [{venv!r} + "/bin/jupyterhub-singleuser"]
c.SimpleLocalProcessSpawner.args = ["--allow-root"] if __import__("os").geteuid() == 0 else []
c.SimpleLocalProcessSpawner.default_url = "/lab"
c.SimpleLocalProcessSpawner.environment = {{"PATH": {venv!r} + "/bin:/usr/bin:/bin"}}
"""


def timed_spawn(hub, session, username, body):
    t0 = time.perf_counter()
    r = hub.api(session, "POST", f"/users/{username}/server", json=body)
    if r.status_code not in (201, 202):
        raise RuntimeError(f"spawn refused: {r.status_code} {r.text}")
    while True:
        model = hub.api(session, "GET", f"/users/{username}").json()
        server = model.get("servers", {}).get("")
        if server and server.get("ready"):
            return time.perf_counter() - t0
        if not model.get("pending") and not server:
            raise RuntimeError(f"{username}'s server failed:\n{hub.log()[-3000:]}")
        time.sleep(0.02)


def stop(hub, session, username):
    hub.api(session, "DELETE", f"/users/{username}/server")
    while hub.api(session, "GET", f"/users/{username}").json().get("servers"):
        time.sleep(0.05)


def main(args):
    from oggmhub.catalog import load_catalog
    from oggmhub.backends.local.environments import build_local_env, default_root

    catalog = load_catalog(os.path.join(REPO, "hub_config", "catalog.yaml"))
    print("building (or reusing) the OGGM environment ...", flush=True)
    venv = str(build_local_env("oggm", catalog, default_root()))
    env = {"OGGMHUB_ENV_CACHE": str(default_root())}
    with tempfile.TemporaryDirectory() as tmp:
        simple_config = os.path.join(tmp, "simple_config.py")
        with open(simple_config, "w") as f:
            f.write(SIMPLE_CONFIG.format(main=os.path.join(REPO, "hub_config", "jupyterhub_config.py"),
                                         homes=os.path.join(tmp, "simple", "homes"), venv=venv))
        ours = LocalHub(os.path.join(tmp, "ours", "data"), env=env).start()
        simple = LocalHub(os.path.join(tmp, "simple", "data"), env=env, config=simple_config).start()
        try:
            sessions = {id(ours): ours.new_user("bench", "bench-password-1"),
                        id(simple): simple.new_user("bench", "bench-password-1")}
            ours.salem_stand_in("bench")
            times = {id(ours): [], id(simple): []}
            bodies = {id(ours): {"profile": "oggm"}, id(simple): {}}
            for i in range(args.spawns + 1):  # the first of each warms caches, not counted
                order = (ours, simple) if i % 2 else (simple, ours)
                for hub in order:
                    elapsed = timed_spawn(hub, sessions[id(hub)], "bench", bodies[id(hub)])
                    stop(hub, sessions[id(hub)], "bench")
                    if i:
                        times[id(hub)].append(elapsed)
        except BaseException:
            print(simple.log()[-3000:], file=sys.stderr)
            raise
        finally:
            ours.stop(servers=True)
            simple.stop(servers=True)

    a, b = times[id(ours)], times[id(simple)]
    print(f"request -> ready over {args.spawns} spawns each (median / min / max, s):")
    print(f"  LocalEnvSpawner (oggmhub)  {statistics.median(a):.3f} {min(a):.3f} {max(a):.3f}")
    print(f"  SimpleLocalProcessSpawner  {statistics.median(b):.3f} {min(b):.3f} {max(b):.3f}")
    print(json.dumps({
        "spawns_each": args.spawns,
        "oggmhub_median_s": round(statistics.median(a), 3),
        "simple_median_s": round(statistics.median(b), 3),
        "ratio_vs_simple": round(statistics.median(a) / statistics.median(b), 3),
    }))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spawns", type=int, default=10, help="timed spawns per spawner (>= 10)")
    main(parser.parse_args())
