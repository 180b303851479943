"""Add 10,000 members to a cohort on a real local hub while another user keeps using it.

A local hub (``oggmhub hub``) is started; an admin creates a cohort and posts a CSV of
``--members`` (default 10,000) new usernames to ``/hub/api/cohorts/NAME/members``
(all or nothing, each account created and owned by the cohort). Meanwhile another user
asks the hub for their own model (``GET /hub/api/user``) every 0.1 s; the slowest of
those answers is what "the hub stays responsive" means. Then the cohort is listed once.

    python benchmarks/bulk_members.py [--members 10000]

Targets (issue 14, F4): added_s <= 30 and max_other_request_s < 2. The last line is
JSON with members, added_s, max_other_request_s, other_requests, list_s.
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from datetime import timedelta

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

import requests  # noqa: E402

from support.local_hub import running_hub  # noqa: E402
from oggmhub.cohorts.model import now_utc  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    args = parser.parse_args()
    now = now_utc()
    with tempfile.TemporaryDirectory(prefix="bulk-members-") as tmp, \
            running_hub(os.path.join(tmp, "data"), env={"OGGMHUB_COHORT_CHECK_INTERVAL": "0"}) as hub:
        admin = hub.admin()
        other = hub.new_user("bystander", "bystander-pass-1")
        token = hub.api(other, "POST", "/users/bystander/tokens", json={"note": "bench"}).json()["token"]
        r = hub.api(admin, "POST", "/cohorts", json={
            "name": "big", "environments": ["oggm"], "start": (now - timedelta(hours=1)).isoformat(),
            "end": (now + timedelta(days=1)).isoformat()})
        r.raise_for_status()
        csv_text = "username,email\n" + "".join(f"s{i:05d},s{i:05d}@example.org\n" for i in range(args.members))

        latencies, stop = [], threading.Event()

        def bystander():
            s = requests.Session()
            s.headers["Authorization"] = f"token {token}"
            while not stop.is_set():
                t0 = time.monotonic()
                s.get(f"{hub.url}/hub/api/user", timeout=120).raise_for_status()
                latencies.append(time.monotonic() - t0)
                time.sleep(0.1)

        thread = threading.Thread(target=bystander)
        thread.start()
        time.sleep(1)
        t0 = time.monotonic()
        r = hub.api(admin, "POST", "/cohorts/big/members", json={"csv": csv_text}, timeout=900)
        added_s = time.monotonic() - t0
        time.sleep(1)
        stop.set()
        thread.join()
        r.raise_for_status()
        added = len(r.json()["added"])
        t0 = time.monotonic()
        listed = hub.api(admin, "GET", "/cohorts/big", timeout=900).json()
        list_s = time.monotonic() - t0
        assert len(listed["members"]) == args.members == added, (len(listed["members"]), added)

    summary = {"members": added, "added_s": round(added_s, 2), "max_other_request_s": round(max(latencies), 3),
               "other_requests": len(latencies), "list_s": round(list_s, 2)}
    print(f"{'members':>10} {'added (s)':>10} {'slowest other request (s)':>26} {'other requests':>15} {'list (s)':>9}")
    print(f"{summary['members']:>10} {summary['added_s']:>10} {summary['max_other_request_s']:>26} "
          f"{summary['other_requests']:>15} {summary['list_s']:>9}")
    print("targets: added_s <= 30, max_other_request_s < 2")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
