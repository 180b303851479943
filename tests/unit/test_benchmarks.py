"""Every benchmark stays runnable by one command: each answers --help, which imports all it
needs (the repository's helpers from tests/support included), before measuring anything."""

import os
import subprocess
import sys

import pytest

from support.paths import REPO

BENCHMARKS = sorted(p.name for p in (REPO / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", BENCHMARKS)
def test_the_benchmark_answers_help(script):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as a person runs it
    done = subprocess.run([sys.executable, os.path.join("benchmarks", script), "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
