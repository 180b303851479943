"""The desktop in the browser: how long it takes to come up and what it costs in memory.

A real local hub runs the Fiji environment (Debian's ImageJ standing in for the Fiji
download, see tests/support/fiji_stand_in.py; built first if needed, not timed). Each round starts
a server through the REST API, opens /user/<name>/desktop/ in Chromium, and measures side
by side, in the same round:

* server_ready_s: from the start request to the Jupyter server being ready;
* desktop_connected_s / desktop_drawn_s: from opening the desktop page to noVNC saying
  "Connected" / to the canvas showing the drawn Xfce desktop;
* mem_server_mib: the session's resident memory before the desktop was opened (the
  Jupyter server), and mem_with_desktop_mib after (server + TigerVNC + Xfce);
* leftover_processes: the session's processes still running after the server stopped
  (target 0).

Run from the repository root (Chromium, TigerVNC, Xfce and imagej installed, as .ci/run
does):

    python benchmarks/desktop.py [--rounds 3]

The last line is a JSON object with the medians and ratios.
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

from support import fiji_stand_in  # noqa: E402
from support.browser import chromium, login  # noqa: E402
from support.desktop_probe import canvas_colours, desktop_server, memory_bytes, session_processes  # noqa: E402
from support.local_hub import running_hub, wait_until  # noqa: E402
from oggmhub.catalog import load_catalog  # noqa: E402
from oggmhub.backends.local.environments import build_local_env, default_root  # noqa: E402
from oggmhub.backends.local.spawner import SESSION_MARKER  # noqa: E402

PASSWORD = "benchmark-desktop-1"
MIB = 2**20


def server_session(hub, username):
    """The session marker of the user's running server (its process environment)."""
    import psutil

    home = os.path.join(hub.data_dir, "homes", username)
    for proc in psutil.process_iter(["name"]):
        try:
            env = proc.environ()
        except psutil.Error:
            continue
        if env.get("JUPYTERHUB_USER") == username and env.get("HOME") == home and SESSION_MARKER in env:
            return env[SESSION_MARKER]
    raise RuntimeError(f"no process of {username}'s server found")


def one_round(hub, browser, session, username):
    t0 = time.monotonic()
    r = hub.api(session, "POST", f"/users/{username}/server", json={"profile": "fiji", "size": "small"})
    r.raise_for_status()
    hub.wait_for_server(session, username)
    server_ready = time.monotonic() - t0
    marker = server_session(hub, username)
    mem_server = memory_bytes(session_processes(marker))

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    login(page, hub, username, PASSWORD)
    t1 = time.monotonic()
    page.goto(f"{hub.url}/user/{username}/desktop/")
    page.locator("#status", has_text="Connected").wait_for(timeout=120_000)
    connected = time.monotonic() - t1
    wait_until(lambda: canvas_colours(page) > 20, 120, "the desktop was never drawn", every=0.05)
    drawn = time.monotonic() - t1
    time.sleep(3)  # let the session's daemons settle before weighing it
    home = os.path.join(hub.data_dir, "homes", username)
    assert desktop_server(home) is not None
    mem_desktop = memory_bytes(session_processes(marker))
    page.close()

    hub.api(session, "DELETE", f"/users/{username}/server")
    wait_until(lambda: not hub.api(session, "GET", f"/users/{username}").json()["servers"], 120,
             "the server did not stop")
    leftovers = len(session_processes(marker))
    return {
        "server_ready_s": round(server_ready, 2), "desktop_connected_s": round(connected, 2),
        "desktop_drawn_s": round(drawn, 2), "mem_server_mib": round(mem_server / MIB, 1),
        "mem_with_desktop_mib": round(mem_desktop / MIB, 1), "leftover_processes": leftovers,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="server starts with a desktop (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images = fiji_stand_in.make_images_dir(os.path.join(tmp, "images"))
        catalog = load_catalog(os.path.join(REPO, "hub_config", "catalog.yaml"))
        print("building the Fiji stand-in environment (not timed) ...", flush=True)
        build_local_env("fiji", catalog, default_root(), context=os.path.join(images, "fiji"))
        rounds = []
        with running_hub(os.path.join(tmp, "data"), images_dir=images) as hub, chromium() as browser:
            session = hub.new_user("grace", PASSWORD)
            for i in range(args.rounds):
                result = one_round(hub, browser, session, "grace")
                rounds.append(result)
                print(f"round {i + 1}: " + ", ".join(f"{k} {v}" for k, v in result.items()), flush=True)
    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    summary = {
        "rounds": len(rounds), **{f"median_{k}": v for k, v in median.items()},
        "ratio_drawn_vs_server_ready": round(median["desktop_drawn_s"] / median["server_ready_s"], 2),
        "ratio_memory_with_desktop_vs_server": round(median["mem_with_desktop_mib"] / median["mem_server_mib"], 2),
        "leftover_processes_max": max(r["leftover_processes"] for r in rounds),
    }
    print(f"desktop drawn {median['desktop_drawn_s']} s after opening it (server ready in "
          f"{median['server_ready_s']} s); memory {median['mem_server_mib']} MiB -> "
          f"{median['mem_with_desktop_mib']} MiB with the desktop; leftovers {summary['leftover_processes_max']}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
