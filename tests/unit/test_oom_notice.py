"""The notice after the memory limit stopped a kernel (oggmhub.session.oom_notice): from
the memory cgroup's own OOM count, once per kill, and the kernel config the local hub adds
to an environment (a real IPython shell runs it). The end-to-end case, a real kernel
killed by its real cgroup, is in test_trust_limits.py."""

import os

from oggmhub.backends.local.size_limits import install_oom_notice
from oggmhub.session import oom_notice


def fake_cgroup(root, kills):
    folder = root / "memory" / "oggmhub" / "x"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "memory.oom_control").write_text(f"oom_kill_disable 0\nunder_oom 0\noom_kill {kills}\n")
    return "v1", str(folder)


def test_the_cgroup_is_found_from_proc(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("12:memory:/oggmhub/x\n5:cpu,cpuacct:/oggmhub/x\n")
    assert oom_notice.memory_cgroup(str(proc), str(tmp_path)) == ("v1", str(tmp_path / "memory" / "oggmhub" / "x"))
    proc.write_text("0::/oggmhub/x\n")
    assert oom_notice.memory_cgroup(str(proc), str(tmp_path)) == ("v2", str(tmp_path / "oggmhub" / "x"))


def test_a_kill_is_told_once_with_the_sizes_limit(tmp_path):
    env = {"OGGMHUB_SCRATCH": str(tmp_path), "OGGMHUB_MEM_LIMIT": str(600 * 2**20)}
    cgroup = fake_cgroup(tmp_path, 0)
    assert oom_notice.notice(env, cgroup) is None  # the first kernel: nothing happened
    cgroup = fake_cgroup(tmp_path, 1)
    text = oom_notice.notice(env, cgroup)
    assert "stopped for using more than this size's memory limit (600 MiB)" in text and "larger size" in text
    assert oom_notice.notice(env, cgroup) is None  # told once
    assert oom_notice.notice({}, cgroup) is None  # no scratch space: nothing to compare with


def test_the_kernel_config_is_added_once_and_runs_in_ipython(tmp_path, capsys, monkeypatch):
    venv = tmp_path / "env"
    (venv / "etc" / "ipython").mkdir(parents=True)
    config = venv / "etc" / "ipython" / "ipython_kernel_config.py"
    config.write_text("c.InteractiveShellApp.exec_lines = ['x = 1']")  # the environment's own
    install_oom_notice(str(venv))
    install_oom_notice(str(venv))
    text = config.read_text()
    assert text.startswith("c.InteractiveShellApp.exec_lines = ['x = 1']\n") and text.count("oom_notice") == 2
    assert oct(os.stat(config).st_mode & 0o777) == "0o644"

    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    exec_lines = []
    c = Config()
    c.InteractiveShellApp.exec_lines = exec_lines
    exec(compile(oom_notice.KERNEL_CONFIG, "config", "exec"), {"c": c})
    cgroup = fake_cgroup(tmp_path, 0)
    monkeypatch.setenv("OGGMHUB_SCRATCH", str(tmp_path))
    monkeypatch.setattr(oom_notice, "memory_cgroup", lambda: cgroup)
    shell = InteractiveShell.instance()
    try:
        for line in c.InteractiveShellApp.exec_lines:
            shell.run_cell(line, store_history=False)
        fake_cgroup(tmp_path, 1)  # the OOM killer struck before this kernel's first cell
        shell.run_cell("print('first cell')")
        shell.run_cell("print('second cell')")
    finally:
        InteractiveShell.clear_instance()
    out = capsys.readouterr().out
    assert out.count("the previous kernel was stopped") == 1
    assert out.index("the previous kernel was stopped") < out.index("first cell") < out.index("second cell")
    assert "_oggmhub_oom" not in shell.user_ns
