"""The first OGGM start on a fresh machine: cold (the environment built, its packages
downloaded) vs warm (the built environment reused), through a real local hub.

One real local hub (JupyterHub + proxy) with an empty environment cache
($OGGMHUB_ENV_CACHE in a temporary folder) and, unless --keep-uv-cache, an empty uv cache
(so every package is downloaded from PyPI, as on a fresh machine). A user starts the
catalog's defaults (OGGM, Small) from the REST API: the cold start includes the whole
build (venv, uv install of requirements.txt, postBuild); the server is stopped and started
again for the warm start. Each is timed from the request to the server being ready. The
spawn page's progress events are recorded too (how many distinct steps and percentages
the user saw). Run from the repository root:

    python benchmarks/first_start.py [--keep-uv-cache]

The last line is a JSON object with cold_start_s and warm_start_s (target: cold <= 120 s on
2 cores where PyPI is reachable).
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time

import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from support.local_hub import LocalHub  # noqa: E402
from spawn_local import stop, timed_spawn  # noqa: E402  (benchmarks/ is on sys.path when run)


def watch_progress(hub, session, username, events, done):
    """Collect the spawn's progress events (what the spawn page shows) until ``done``."""
    url = f"{hub.url}/hub/api/users/{username}/server/progress"
    headers = {"X-XSRFToken": session.cookies.get("_xsrf", "")}
    while not done.is_set():
        try:
            with session.get(url, stream=True, timeout=(5, 600), headers=headers) as r:
                for line in r.iter_lines(decode_unicode=True):
                    if line and line.startswith("data:"):
                        event = json.loads(line[5:])
                        events.append((time.monotonic(), event.get("progress"), event.get("message", "")))
                        if event.get("ready") or event.get("failed"):
                            return
        except requests.RequestException:
            pass
        time.sleep(0.2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep-uv-cache", action="store_true",
                        help="reuse this machine's uv cache (packages already downloaded) instead of an empty one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oggmhub-first-start-") as tmp:
        env = {"OGGMHUB_ENV_CACHE": os.path.join(tmp, "envs")}
        if not args.keep_uv_cache:
            env["UV_CACHE_DIR"] = os.path.join(tmp, "uv-cache")
        hub = LocalHub(os.path.join(tmp, "data"), env=env).start()
        try:
            session = hub.new_user("ada", "first-start-2026")
            hub.salem_stand_in("ada")
            events, done = [], threading.Event()
            watcher = threading.Thread(target=watch_progress, args=(hub, session, "ada", events, done), daemon=True)
            t0 = time.monotonic()
            watcher.start()
            cold = timed_spawn(hub, session, "ada", {})
            done.set()
            watcher.join(5)
            stop(hub, session, "ada")
            warm = timed_spawn(hub, session, "ada", {})
            stop(hub, session, "ada")
        finally:
            hub.stop(servers=True)
    percents = [p for _, p, _ in events if p is not None]
    steps = [f"{t - t0:6.1f} s {p:>3}% {m[:90]}" for t, p, m in events]
    print("progress the spawn page showed (cold start):")
    print("\n".join(steps[:: max(1, len(steps) // 25)]))
    print(f"cold first start (build included{'' if args.keep_uv_cache else ', empty uv cache'}): {cold:7.1f} s")
    print(f"warm start (environment reused):                {warm:7.1f} s")
    print(f"load: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(json.dumps({
        "cold_start_s": round(cold, 1), "warm_start_s": round(warm, 1), "target_cold_s": 120,
        "progress_events": len(events), "distinct_percentages": len(set(percents)),
        "empty_uv_cache": not args.keep_uv_cache, "load_1min": round(os.getloadavg()[0], 1),
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
