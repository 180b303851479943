"""Which catalog sizes and GPU variants this machine can honour (the local backend).

A size is offered when the machine has its CPU and memory guarantee, and as many CPUs as
its limit promises (the environment's default size is exempt from the last: it runs,
capped by the machine). A GPU variant is offered only where an NVIDIA GPU is present
(``/dev/nvidia0`` or ``nvidia-smi -L``). What cannot be honoured is left out of the picker,
refused from the API with the same reason, and listed once when the hub starts.
"""

from __future__ import annotations

from dataclasses import dataclass
import glob
import os
import shutil
import subprocess

from oggmhub.choice import ChoiceError

GIB = 1024**3


@dataclass(frozen=True)
class Machine:
    cpus: int
    memory: int  # bytes
    gpus: int

    def describe(self):
        gpus = f"{self.gpus} GPU{'s' if self.gpus != 1 else ''}" if self.gpus else "no GPU"
        return f"{self.cpus} CPU{'s' if self.cpus != 1 else ''}, {self.memory / GIB:.1f} GiB, {gpus}"


def _gpu_count():
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
            return sum(1 for line in out.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.SubprocessError):
            pass
    return len(glob.glob("/dev/nvidia[0-9]*"))


MACHINE_ENV = "OGGMHUB_MACHINE"  # e.g. "cpus=2,memory=8Gi,gpus=0": the hub as on a smaller machine


def this_machine():
    """This machine's CPUs (those this process may use), memory and NVIDIA GPUs; fields
    set in ``$OGGMHUB_MACHINE`` (``cpus=2,memory=8Gi,gpus=0``) take their place."""
    import psutil

    from oggmhub.session.quantities import parse_memory

    override = dict(item.split("=", 1) for item in os.environ.get(MACHINE_ENV, "").split(",") if "=" in item)
    if override:
        base = _measure(psutil)
        return Machine(cpus=int(override.get("cpus", base.cpus)),
                       memory=parse_memory(override["memory"]) if "memory" in override else base.memory,
                       gpus=int(override.get("gpus", base.gpus)))
    return _measure(psutil)


def _measure(psutil):
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Machine(cpus=cpus, memory=psutil.virtual_memory().total, gpus=_gpu_count())


def _cpus(n):
    return f"{n:g} CPU{'s' if n != 1 else ''}"


def size_problem(env, size, machine):
    """Why ``machine`` cannot honour ``size`` of ``env`` (one sentence), or None."""
    have = f"this machine has {machine.describe()}"
    if size.cpu_guarantee > machine.cpus:
        return f"{env.display_name} {size.display_name} guarantees {_cpus(size.cpu_guarantee)}; {have}"
    if size.mem_guarantee > machine.memory:
        return f"{env.display_name} {size.display_name} guarantees {size.mem_guarantee / GIB:g} GiB of memory; {have}"
    if size.cpu_limit > machine.cpus and size is not env.default_size:
        return f"{env.display_name} {size.display_name} promises {_cpus(size.cpu_limit)}; {have}"
    return None


def gpu_problem(env, gpu, machine):
    if gpu is not None and gpu.count > machine.gpus:
        return f"{env.display_name} with {gpu.display_name} needs {gpu.count} NVIDIA GPU(s); this machine has {machine.describe()}"
    return None


def check_choice(choice, machine):
    """Raise :class:`ChoiceError` (HTTP 400 from the API) for a choice ``machine`` cannot honour."""
    problem = size_problem(choice.environment, choice.size, machine)
    if problem:
        raise ChoiceError("size", f"{problem}; not offered on this hub")
    problem = gpu_problem(choice.environment, choice.gpu, machine)
    if problem:
        raise ChoiceError("gpu", f"{problem}; not offered on this hub")


def fit_profiles(profiles, catalog, machine):
    """kubespawner-style ``profiles`` without the sizes and GPU variants ``machine`` cannot honour."""
    fitted = []
    for profile in profiles:
        env = catalog.environments[profile["slug"]]
        options = dict(profile["profile_options"])
        sizes = {n: dict(c) for n, c in options["size"]["choices"].items()
                 if not size_problem(env, env.sizes[n], machine)}
        if not sizes:
            continue
        if not any(c.get("default") for c in sizes.values()):
            next(iter(sizes.values()))["default"] = True
        options["size"] = {**options["size"], "choices": sizes}
        if "gpu" in options:
            gpus = {n: c for n, c in options["gpu"]["choices"].items()
                    if n not in env.gpus or not gpu_problem(env, env.gpus[n], machine)}
            if len(gpus) > 1:
                options["gpu"] = {**options["gpu"], "choices": gpus}
            else:
                del options["gpu"]
        fitted.append({**profile, "profile_options": options})
    return fitted


def not_offered(catalog, machine):
    """One line per size or GPU variant of ``catalog`` that ``machine`` cannot honour."""
    lines = []
    for env in catalog.environments.values():
        lines += [p for p in (size_problem(env, s, machine) for s in env.sizes.values()) if p]
        lines += [p for p in (gpu_problem(env, g, machine) for g in env.gpus.values()) if p]
    return lines
