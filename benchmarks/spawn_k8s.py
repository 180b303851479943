"""Hub-side start() latency: OGGMHubSpawner vs plain KubeSpawner, then 200 concurrent spawns.

Both run against one kmock Kubernetes API server with the test kubelet, in one run,
interleaved so that drift affects both alike. Each spawn is a new user (so each creates
its home PVC). Run from the repository root:

    python benchmarks/spawn_k8s.py [--spawns 60] [--concurrent 200]

The last line is a JSON object with ratio_vs_kubespawner, concurrent, ready, lost and
all_ready_s (targets: ratio <= 1.15; every concurrent spawn ready, none lost).
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from support.kube_harness import KubeAPI, hub_start, TestKubelet, configure_kubespawner, make_spawner, reset_kubespawner  # noqa: E402

CATALOG = os.path.join(REPO, "hub_config", "catalog.yaml")
COMMON = dict(k8s_api_request_timeout=10, k8s_api_request_retry_timeout=60, start_timeout=120)


def plain_spawner(name):
    from kubespawner import KubeSpawner

    return make_spawner(
        name, spawner_class=KubeSpawner, storage_pvc_ensure=True, pvc_name_template="home-{username}",
        storage_capacity="10Gi", uid=1000, image="ghcr.io/oggmhub/oggm:bench", **COMMON,
    )


def oggmhub_spawner(name):
    from oggmhub.spawner import OGGMHubSpawner

    from traitlets.config import Config

    config = Config()
    config.Catalog.path = str(CATALOG)
    return make_spawner(name, spawner_class=OGGMHubSpawner, config=config, **COMMON)


async def timed_start(spawner, options):
    t0 = time.perf_counter()
    await hub_start(spawner, options)
    return time.perf_counter() - t0


async def sequential(spawns):
    plain, ours = [], []
    for i in range(spawns + 2):  # the first two of each warm up clients and reflectors
        a, b = plain_spawner(f"plain{i}"), oggmhub_spawner(f"ours{i}")
        pairs = [(a, {}, plain), (b, {"profile": "oggm"}, ours)]
        if i % 2:
            pairs.reverse()
        for spawner, options, out in pairs:
            elapsed = await timed_start(spawner, options)
            if i >= 2:
                out.append(elapsed)
            await spawner.stop(now=True)
    return plain, ours


async def concurrent(api, count):
    spawners = [oggmhub_spawner(f"student{i}") for i in range(count)]
    t0 = time.perf_counter()
    results = await asyncio.gather(*(hub_start(s, {"profile": "oggm"}) for s in spawners), return_exceptions=True)
    all_ready_s = time.perf_counter() - t0
    failures = [r for r in results if isinstance(r, BaseException)]
    running = {p["metadata"]["name"] for p in api.objects("pods") if p.get("status", {}).get("phase") == "Running"}
    ready = sum(1 for s, r in zip(spawners, results) if not isinstance(r, BaseException) and s.pod_name in running)
    await asyncio.gather(*(s.stop(now=True) for s in spawners), return_exceptions=True)
    return ready, failures, all_ready_s


async def choice_overhead(repeat=200):
    """CPU time OGGMHubSpawner adds per start (validate + merge + the safety check), in s.

    The start() latencies above are dominated by kubespawner's randomised back-off while
    it waits for the pod; this isolates what oggmhub adds.
    """
    spawner = oggmhub_spawner("overhead")
    t0 = time.perf_counter()
    for _ in range(repeat):
        spawner.user_options = {"profile": "slicer", "size": "large", "gpu": "t4"}
        await spawner._run_apply_user_options(spawner.user_options)
        pod = await spawner.get_pod_manifest()
        spawner.api.api_client.sanitize_for_serialization(pod)
    return (time.perf_counter() - t0) / repeat


async def main(args):
    with tempfile.TemporaryDirectory() as tmp:
        async with KubeAPI() as api:
            await configure_kubespawner(api, os.path.join(tmp, "kubeconfig"))
            async with TestKubelet(api):
                plain, ours = await sequential(args.spawns)
                ready, failures, all_ready_s = await concurrent(api, args.concurrent)
                overhead = await choice_overhead()
            await reset_kubespawner()

    med_plain, med_ours = statistics.median(plain), statistics.median(ours)
    print(f"start() latency over {args.spawns} spawns each (median / mean / p90, ms):")
    for label, xs in (("KubeSpawner", plain), ("OGGMHubSpawner", ours)):
        p90 = statistics.quantiles(xs, n=10)[-1]
        print(f"  {label:15s} {1000 * statistics.median(xs):7.1f} {1000 * statistics.mean(xs):7.1f} {1000 * p90:7.1f}")
    print(f"oggmhub's own work per start (choice, merge, safety check): {1000 * overhead:.2f} ms")
    print(f"{args.concurrent} concurrent OGGMHubSpawner starts: {ready} ready, "
          f"{args.concurrent - ready} lost, all ready in {all_ready_s:.2f} s")
    for failure in failures[:3]:
        print(f"  failure: {failure!r}")
    summary = {
        "spawns_each": args.spawns,
        "kubespawner_median_s": round(med_plain, 4),
        "oggmhub_median_s": round(med_ours, 4),
        "ratio_vs_kubespawner": round(med_ours / med_plain, 3),
        "ratio_of_means": round(statistics.mean(ours) / statistics.mean(plain), 3),
        "oggmhub_overhead_ms": round(1000 * overhead, 3),
        "concurrent": args.concurrent,
        "ready": ready,
        "lost": args.concurrent - ready,
        "all_ready_s": round(all_ready_s, 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spawns", type=int, default=60, help="sequential spawns of each spawner (>= 20)")
    parser.add_argument("--concurrent", type=int, default=200, help="concurrent OGGMHubSpawner spawns")
    asyncio.run(main(parser.parse_args()))
