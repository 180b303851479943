"""Every example in the README that a user types runs as written, on the catalog's defaults.

The README's ```bash and ```python blocks are read from the file itself; each command is
either run here, or named below with where it is run instead (or why it cannot be here), so
a new example fails this test until it is one or the other.
"""

import os
import re
import shlex
import subprocess
import sys

from support.local_hub import REPO

ELSEWHERE = {
    "./start-local-hub.sh": "tests/test_newcomer.py runs it from a fresh clone on the distribution's python3",
    "bash .ci/run": "it is the CI run itself",
    "docker build": "needs a Docker engine (images are rendered and tagged below instead)",
    "helm upgrade": "needs a Kubernetes cluster (tests/test_helm_values.py validates the values against the chart)",
    "oggmhub images build": "needs a Docker engine and a registry",
    "export JUPYTERHUB_API_TOKEN": "the cohort commands below run against a hub in tests/test_cohort_hub.py",
    "oggmhub cohort": "runs against a running hub with a token: tests/test_cohort_hub.py",
    "python benchmarks/": "benchmarks, minutes each; run by hand (their last line is JSON)",
    "curl ": "REST calls to a running hub's services with a token: tests/test_tasks_hub.py makes them",
}
RUN_HERE = ("oggmhub catalog check", "oggmhub images render", "oggmhub images tag")


def readme_blocks(language):
    text = open(os.path.join(REPO, "README.md")).read()
    return re.findall(rf"^ *```{language}\n(.*?)^ *```", text, re.S | re.M)


def commands(block):
    """The block's commands: comments dropped, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.split(" #", 1)[0].strip() for line in joined.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_every_shell_example_runs_or_says_where_it_does():
    seen_here = []
    for block in readme_blocks("bash"):
        for command in commands(block):
            if command.startswith("curl "):
                break  # the rest of the block is its request body
            if any(command.startswith(prefix) for prefix in ELSEWHERE):
                continue
            assert command.startswith(RUN_HERE), f"README example not run by any test: {command!r}"
            words = shlex.split(command)
            assert words[0] == "oggmhub"
            result = subprocess.run([sys.executable, "-m", "oggmhub", *words[1:]], cwd=REPO,
                                    capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, (command, result.stderr[-2000:])
            seen_here.append(command)
    assert len(seen_here) >= 3, seen_here


def test_the_python_examples_run_in_the_default_environment_on_its_default_size(catalog, tmp_path):
    """The Dask example, in the local OGGM environment with the session variables a server of
    the catalog's defaults (OGGM, Small) gets: not refused, and the cluster comes up."""
    from oggmhub.backends.local.environments import build_local_env, default_root
    from oggmhub.session import dask_limits

    blocks = readme_blocks("python")
    assert blocks, "the README has Python examples"
    env_def = catalog.default_environment
    size = env_def.default_size
    venv = build_local_env(env_def.name, catalog, default_root(), progress=None)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OGGM", "JUPYTER", "DASK_"))}
    env.update({"OGGMHUB_ENVIRONMENT": env_def.name, "OGGMHUB_SIZE": size.name,
                "OGGMHUB_CPU_LIMIT": f"{size.cpu_limit:g}", "OGGMHUB_MEM_LIMIT": str(size.mem_limit),
                **dask_limits.session_env(env_def, size, "local"),
                "OGGMHUB_DASK_REGISTRY": str(tmp_path / "registry"), "HOME": str(tmp_path),
                "PYTHONPATH": REPO})  # this checkout's oggmhub (a cached environment may have older helpers)
    for block in blocks:
        code = block + "\nprint('oggmhub-readme-example-ok')\n"
        result = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0 and "oggmhub-readme-example-ok" in result.stdout, \
            f"README example failed on the defaults ({env_def.name}, {size.name}):\n{block}\n{result.stderr[-3000:]}"
