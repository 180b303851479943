"""A used-up budget warned inside JupyterLab (oggmhub.session.budget_notice): the hub's
sentence, the file the local spawner leaves in the scratch (never through a link), and a
real IPython shell printing it once above the next cell's output. On a real hub:
tests/hub/test_usage_hub.py."""

import json
import os

from oggmhub.backends.local import user_files
from oggmhub.session import budget_notice, oom_notice
from oggmhub.usage import budgets


def test_the_sentence_names_the_budget_and_when_the_server_stops():
    budget = budgets.Budget(name="workshop", scope="cohort", target="glaciology", unit="core-hours",
                            amount=96, window="day")
    text = budgets.lab_notice(budget, 97.5, 1_800_000_000)  # 2027-01-15 08:00 UTC
    assert text.startswith("oggmhub: your usage budget 'workshop' (96 core-hours per member per day for cohort "
                           "glaciology) is used up (97.50 core-hours this day)"), text
    assert "will be stopped at 2027-01-15 08:00 UTC" in text and text.endswith("save your work now.")


def test_the_notice_is_per_server_and_never_written_through_a_link(tmp_path):
    scratch, target = tmp_path / "scratch", tmp_path / "elsewhere"
    scratch.mkdir()
    target.write_text("keep")
    os.symlink(target, scratch / "budget-notice.default.json")  # the user's link at the notice's name
    user_files.write_budget_notice(str(scratch), "", "oggmhub: stop soon.")
    assert target.read_text() == "keep"
    notice = scratch / "budget-notice.default.json"
    assert not notice.is_symlink() and json.loads(notice.read_text()) == {"text": "oggmhub: stop soon."}
    assert oct(notice.stat().st_mode & 0o777) == "0o644"
    env = {"OGGMHUB_SCRATCH": str(scratch)}
    assert budget_notice.read(env) == {"text": "oggmhub: stop soon."}
    assert budget_notice.read({**env, "JUPYTERHUB_SERVER_NAME": "gpu"}) is None  # another server's
    user_files.write_budget_notice(str(scratch), "", None)
    assert not notice.exists() and budget_notice.read(env) is None
    user_files.write_budget_notice(str(scratch), "", None)  # nothing there: no-op
    (scratch / "budget-notice.default.json").write_text("not json")
    assert budget_notice.read(env) is None and budget_notice.read({}) is None


def test_a_kernel_prints_the_notice_once_above_the_next_cells_output(tmp_path, capsys, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("OGGMHUB_SCRATCH", str(tmp_path))
    monkeypatch.delenv("JUPYTERHUB_SERVER_NAME", raising=False)
    monkeypatch.setattr(oom_notice, "memory_cgroup", lambda: None)
    shell = InteractiveShell.instance()
    try:
        oom_notice.load_ipython_extension(shell)  # what every kernel of a local server loads
        shell.run_cell("print('before')")
        user_files.write_budget_notice(str(tmp_path), "", "oggmhub: your usage budget 'w' is used up.")
        shell.run_cell("print('first cell')")
        shell.run_cell("print('second cell')")
    finally:
        InteractiveShell.clear_instance()
    out = capsys.readouterr().out
    assert out.count("your usage budget 'w' is used up") == 1
    assert out.index("before") < out.index("your usage budget") < out.index("first cell") < out.index("second cell")
