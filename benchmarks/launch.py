"""Launch links through a real local hub: how fast an identifier resolves, how long a
confirmed launch takes to land in JupyterLab at the dataset, and how fast the same link
opens again.

Runs the local hub (``oggmhub hub``) with the launch tests' catalog (tests/support/launch_fixtures.py:
the OGGM mirror in a local folder) and the cached OGGM environment; a user confirms a
DOI launch over HTTP (the page's POST with its _xsrf), as the button does.

    python benchmarks/launch.py [--resolves 200]

Prints figures side by side; the last line is JSON: resolve_ms (median and p95 of
``GET /hub/api/datasets/resolve``), launch_to_lab_s (POST to JupyterLab's page at the
dataset answering), reopen_ms (the same link again: one redirect). Targets: resolve
p95 under 50 ms, reopen under 200 ms.
"""

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from support.launch_fixtures import OGGM_DOI, launch_catalog  # noqa: E402
from support.local_hub import running_hub  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolves", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oggmhub-launch-bench-") as tmp:
        catalog = launch_catalog(os.path.join(tmp, "config"))
        with running_hub(os.path.join(tmp, "data"), catalog=catalog, images_dir=os.path.join(REPO, "images"),
                         env={"OGGMHUB_COHORT_CHECK_INTERVAL": "0"}) as hub:
            session = hub.new_user("bench")
            hub.salem_stand_in("bench")
            times = []
            spellings = [OGGM_DOI, f"doi:{OGGM_DOI}", f"https://doi.org/{OGGM_DOI}", "oggm-mirror"]
            for i in range(args.resolves):
                t = time.perf_counter()
                r = hub.api(session, "GET", "/datasets/resolve", params={"id": spellings[i % len(spellings)]})
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, r.text
            times.sort()
            resolve_ms = {"median": round(statistics.median(times), 1), "p95": round(times[int(len(times) * 0.95) - 1], 1)}

            link = f"{hub.url}/hub/launch?dataset=https://doi.org/{OGGM_DOI}"
            page = session.get(link)
            xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
            t = time.perf_counter()
            r = session.post(f"{hub.url}/hub/launch", data={"dataset": f"https://doi.org/{OGGM_DOI}",
                                                             "action": "start", "_xsrf": xsrf}, allow_redirects=False)
            assert r.status_code == 302, r.text[-2000:]
            hub.wait_for_server(session, "bench")
            lab = f"{hub.url}/user/bench/lab/tree/datasets/oggm-mirror"
            while session.get(lab).status_code != 200:
                time.sleep(0.2)
            launch_to_lab_s = round(time.perf_counter() - t, 1)

            reopen = []
            for _ in range(20):
                t = time.perf_counter()
                r = session.get(link, allow_redirects=False)
                reopen.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 302 and r.headers["Location"].endswith("/user/bench/lab/tree/datasets/oggm-mirror")
            reopen_ms = round(statistics.median(reopen), 1)
    print(f"{'resolve median ms':>20} {'resolve p95 ms':>15} {'launch to lab s':>16} {'reopen ms':>10}")
    print(f"{resolve_ms['median']:>20} {resolve_ms['p95']:>15} {launch_to_lab_s:>16} {reopen_ms:>10}")
    print(json.dumps({"resolve_ms": resolve_ms, "launch_to_lab_s": launch_to_lab_s, "reopen_ms": reopen_ms,
                      "resolves": args.resolves, "load": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
