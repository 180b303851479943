"""The units usage is counted and budgeted in, and how one record is worth them.

A record (:mod:`oggmhub.usage.store`) holds a start and stop (epoch seconds), the CPU
seconds measured, the memory limit (bytes) and the GPU count. Over a window it is worth,
for the part of its life inside the window:

- ``core-hours``: the CPU time measured, prorated by time inside the window, / 3600;
- ``gib-hours``: the memory limit in GiB × hours inside the window;
- ``gpu-hours``: GPUs × hours inside the window.
"""

from __future__ import annotations

GIB = 1024 ** 3
UNITS = ("core-hours", "gib-hours", "gpu-hours")
UNIT_TEXT = {"core-hours": "core-hours", "gib-hours": "GiB-hours", "gpu-hours": "GPU-hours"}


def overlap_hours(start, stop, begin, end):
    """Hours of [start, stop] inside [begin, end] (0 if none; a stop before its start, as
    after a clock change, counts as no time)."""
    return max(0.0, min(stop, end) - max(start, begin)) / 3600.0


def worth(record, begin, end, now):
    """``{unit: amount}`` of ``record`` (a mapping) within [begin, end]; a running
    record (no stop) counts up to ``now``."""
    start = record["start"]
    stop = record["stop"] if record["stop"] is not None else max(now, record["updated"] or start)
    hours = overlap_hours(start, stop, begin, end)
    life = max(stop - start, 1e-9) / 3600.0
    share = min(1.0, hours / life) if life > 0 else 0.0
    return {
        "core-hours": (record["cpu_seconds"] or 0.0) / 3600.0 * share,
        "gib-hours": (record["mem_limit"] or 0.0) / GIB * hours,
        "gpu-hours": (record["gpus"] or 0) * hours,
    }
