"""One run, start to end: fetch the inputs, run the tool, publish outputs.

:func:`execute` takes a JSON-able *plan* (built by :mod:`oggmhub.tasks.runs`) so it runs
the same in the local runner (:mod:`oggmhub.tasks.local_runner`), on a Dask worker or in a Job
(``python -m oggmhub.tasks.execution PLAN.json``). The tool runs as a child process of the
environment's Python, in a session of its own (a cancel ends it and everything it started).

Outputs appear atomically: the tool writes into a scratch folder; only when it exited 0
and wrote every output is each one copied beside its target under a hidden temporary name
and renamed into place (a bucket object is uploaded in one request, which the store makes
visible only once complete). A failed or cancelled run publishes nothing.

A run's ``input-str`` texts (``plan["texts"]``, file name -> text) are written into the
tool's working folder before it starts; an input ``input-str:NAME`` is that file.

Cancelling (:func:`kill`) and starting the tool meet in a handshake: :func:`kill` writes
``cancel`` and then reads ``pid``; the run writes ``pid`` and then looks for ``cancel``
(and once more right before it starts the tool). Whichever comes second stops the tool,
so a run cancelled while it fetched its inputs never starts its tool afterwards.

With ``plan["run_as"]`` (a user's system account on the local backend, when the service
is root: :meth:`oggmhub.tasks.local_runner.LocalRunner.run_as_for`) everything that touches
the user's files happens as that account, so the kernel, not a path check made earlier,
decides what the run may read and write: the tool runs as the account (its home inputs
are read by it), its outputs are copied into the home by the account (``sh``'s ``cp`` and
``mv``) and read back for a bucket by the account (``cat``). Its working folder is made
by root in the system's temporary folder (sticky: the user cannot swap it for a link),
filled with the fetched inputs, and only then handed to the account.

As a program (a Kubernetes Job's pod), the run's log is printed to stdout, then one JSON
line with the result: the pod's log is what the tasks service reads back.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

LOG = "log.txt"
PID = "pid"
CANCEL = "cancel"


def _filesystem(location):
    if location["kind"] == "dataset":
        from oggmhub.session.datasets import Dataset, source_filesystem

        fs, root = source_filesystem(Dataset(**location["dataset"]))
        return fs, f"{root}/{location['path']}".rstrip("/") if location["path"] else root
    import fsspec

    fs, path = fsspec.core.url_to_fs(location["url"], **location.get("options", {}))
    return fs, path


def fetch(location, dest_dir):
    """A local path holding the input (home files are used where they are)."""
    if location["kind"] == "local":
        if not os.path.exists(location["path"]):
            raise FileNotFoundError(f"no such file in your home: {location['path']}")
        return location["path"]
    fs, path = _filesystem(location)
    os.makedirs(dest_dir, exist_ok=True)
    local = os.path.join(dest_dir, os.path.basename(path.rstrip("/")) or "input")
    fs.get(path, local)
    return local


# as the account: make the folder, copy beside the target, rename into place (or remove the copy)
_PUBLISH_AS = 'mkdir -p -- "$1" && cp -- "$2" "$3" && mv -f -T -- "$3" "$4" || { rm -f -- "$3"; exit 1; }'


def _as_account(run_as):
    """``subprocess`` arguments that run a child as ``run_as`` (uid, gid, groups)."""
    return {"user": run_as["uid"], "group": run_as["gid"], "extra_groups": list(run_as["groups"])}


def publish(local, location, run_id, run_as=None, private_dir=None):
    """Put ``local`` at ``location`` atomically (as ``run_as`` where given; then a bucket
    upload reads ``local`` through the account into ``private_dir`` first)."""
    if run_as is not None:
        if location["kind"] == "local":
            target = location["path"]
            partial = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.partial-{run_id}")
            done = subprocess.run(["/bin/sh", "-c", _PUBLISH_AS, "sh", os.path.dirname(target), local, partial, target],
                                  capture_output=True, text=True, **_as_account(run_as))
            if done.returncode:
                raise PermissionError(f"could not write {target}: {done.stderr.strip() or 'exit ' + str(done.returncode)}")
            return target
        copy = os.path.join(private_dir, "upload")
        with open(copy, "wb") as f:
            done = subprocess.run(["cat", "--", local], stdout=f, stderr=subprocess.PIPE, text=False,
                                  **_as_account(run_as))
        if done.returncode:
            raise PermissionError(f"could not read the output {os.path.basename(local)}: {done.stderr.decode(errors='replace').strip()}")
        local = copy
    if location["kind"] == "local":
        target = location["path"]
        os.makedirs(os.path.dirname(target), exist_ok=True)
        partial = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.partial-{run_id}")
        try:
            shutil.copyfile(local, partial)
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
        return target
    fs, path = _filesystem(location)
    fs.put_file(local, path)  # one upload: the object appears complete or not at all
    return location["url"]


def argv(plan, values, files):
    """The tool's command line (Slicer's rules: flags first, then arguments by index)."""
    if plan["kind"] == "scijava-script":
        merged = {**values, **files}
        return [*plan["command"], json.dumps(merged)]
    args, positional = [], []
    for p in plan["parameters"]:
        name = p["name"]
        if name in files:
            value = files[name]
        elif name in values:
            value = values[name]
        else:
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if p["index"] is not None:
            positional.append((p["index"], str(value)))
            continue
        flag = p["longflag"] or p["flag"]
        if p["type"] == "boolean":
            if value:
                args.append(flag)
            continue
        args += [flag, str(value)]
    return [*plan["command"], *args, *(v for _, v in sorted(positional))]


def _tail(path, limit=4000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-limit:]
    except OSError:
        return ""


def execute(plan, preexec=None, on_started=None):
    """Run ``plan``; a result dict (``status`` done, failed or cancelled). ``preexec`` (the
    local runner's, :func:`oggmhub.tasks.isolation.preexec`) puts the tool in its run's
    cgroup and makes it the account; without it the tool becomes the account by
    ``subprocess``'s own arguments. ``on_started()`` is called once the tool runs."""
    run_dir = plan["run_dir"]
    started = time.time()
    os.makedirs(run_dir, exist_ok=True)
    log_path = os.path.join(run_dir, LOG)
    result = {"status": "failed", "started": started, "outputs": {}, "error": ""}
    if os.path.exists(os.path.join(run_dir, CANCEL)):
        return {**result, "status": "cancelled", "finished": time.time()}
    run_as = plan.get("run_as") if os.geteuid() == 0 else None
    work = tempfile.mkdtemp(prefix=f"oggmhub-task-{plan['run_id']}-") if run_as else tempfile.mkdtemp(prefix="work-", dir=run_dir)
    try:
        with open(log_path, "a") as log:
            files = {}
            for text_name, text in (plan.get("texts") or {}).items():
                with open(os.path.join(work, text_name), "w") as f:
                    f.write(text)
            try:
                for name, loc in plan["inputs"].items():
                    if loc["kind"] == "text":
                        files[name] = os.path.join(work, loc["name"])
                        continue
                    files[name] = fetch(loc, os.path.join(work, "in", name))
            except Exception as e:  # noqa: BLE001 (reported in the run)
                log.write(f"oggmhub: could not read input {name}: {e}\n")
                return {**result, "error": f"could not read input {name}: {e}", "finished": time.time()}
            tmp = os.path.join(work, "tmp")  # the run's own TMPDIR (/tmp is everyone's)
            os.makedirs(tmp, mode=0o700)
            outs = {}
            for name, loc in plan["outputs"].items():
                base = os.path.basename((loc.get("path") or loc.get("url", "")).rstrip("/")) or name
                os.makedirs(os.path.join(work, "out", name))
                outs[name] = files[name] = os.path.join(work, "out", name, base)
            command = argv(plan, plan["values"], files)
            account = {}
            if run_as:
                from oggmhub.backends.local.file_modes import give

                give(work, SimpleNamespace(uid=run_as["uid"], gid=run_as["gid"]))  # filled first, then handed over
                account = {} if preexec else _as_account(run_as)
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            if os.path.exists(os.path.join(run_dir, CANCEL)):  # cancelled while the inputs came
                return {**result, "status": "cancelled", "finished": time.time()}
            cli_started = time.time()
            env = {**tool_env(os.environ, plan.get("env", {}), run_as), "TMPDIR": tmp,
                   "OGGM_EXTRACT_DIR": os.path.join(tmp, "oggm-extract")}
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=work, env=env, start_new_session=True, preexec_fn=preexec,
                                    **account)
            with open(os.path.join(run_dir, PID), "w") as f:
                f.write(str(proc.pid))
            if on_started is not None:
                on_started()
            if os.path.exists(os.path.join(run_dir, CANCEL)):  # kill() came before the pid: stop it here
                os.killpg(proc.pid, signal.SIGKILL)
            try:
                rc = proc.wait(timeout=plan.get("timeout", 3600))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                log.write(f"\noggmhub: stopped after {plan.get('timeout')} s (the task's time limit)\n")
                rc = "timeout"
            result["cli_seconds"] = time.time() - cli_started
            result["returncode"] = rc
        if os.path.exists(os.path.join(run_dir, CANCEL)):
            return {**result, "status": "cancelled", "finished": time.time()}
        if rc != 0:
            return {**result, "error": _tail(log_path, 2000), "finished": time.time()}
        missing = [n for n, path in outs.items() if not os.path.isfile(path)]
        if missing:
            return {**result, "error": f"the tool exited 0 but wrote no {', '.join(missing)}", "finished": time.time()}
        for name, path in outs.items():
            try:
                result["outputs"][name] = publish(path, plan["outputs"][name], plan["run_id"], run_as, run_dir)
            except PermissionError as e:
                return {**result, "error": f"output {name}: {e}", "finished": time.time()}
        return {**result, "status": "done", "finished": time.time()}
    finally:
        shutil.rmtree(work, ignore_errors=True)  # fd-based: a link the tool left is removed, not followed
        for name in (PID, "upload"):
            try:
                os.unlink(os.path.join(run_dir, name))
            except OSError:
                pass


_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "KEY")
_HUB_PREFIXES = ("JUPYTERHUB_", "JPY_", "CONFIGPROXY_")


def tool_env(service_env, task_env, run_as):
    """The tool's environment: the service's, less the hub's variables and anything
    secret (the service's API token, storage credentials: the tool needs none, its
    inputs are fetched for it), plus the task's own and, with an account, its HOME,
    USER and LOGNAME."""
    env = {k: v for k, v in service_env.items()
           if not k.startswith(_HUB_PREFIXES) and not any(w in k.upper() for w in _SECRET_WORDS)}
    env.update(task_env)
    if run_as:
        env.update({"HOME": run_as["home"], "USER": run_as["name"], "LOGNAME": run_as["name"]})
    return env


def mark_cancelled(run_dir):
    """Write the run's cancel mark (its run folder is the service's: no user writes there)."""
    os.makedirs(run_dir, exist_ok=True)
    open(os.path.join(run_dir, CANCEL), "w").close()


def kill(run_dir):
    """Mark a run cancelled and end its tool's process group, if one runs (the pid is read
    from the service's own run folder, which the tool cannot write)."""
    mark_cancelled(run_dir)
    try:
        with open(os.path.join(run_dir, PID)) as f:
            pid = int(f.read().strip())
        os.killpg(pid, signal.SIGKILL)
        return True
    except (OSError, ValueError):
        return False


def main(argv_=None):
    argv_ = sys.argv[1:] if argv_ is None else argv_
    with open(argv_[0]) as f:
        plan = json.load(f)
    result = execute(plan)
    sys.stdout.write(_tail(os.path.join(plan["run_dir"], LOG), 200_000))  # the result line stays in reach
    print("\n" + json.dumps(result))
    return 0 if result["status"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
