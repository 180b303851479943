"""The tasks' pages: a list of tasks with the run history, and a form per task generated
from its spec (types, defaults, ranges, enumerations, file pickers over the user's home
and the datasets). The form posts to the REST API, like any other client."""

from __future__ import annotations

import os
import time
from html import escape

from oggmhub.tasks.spec import ENUMS, VECTORS

# on top of the hub's own stylesheet (Bootstrap 5), so the pages look like the hub's
STYLE = """.help{font-weight:normal;color:var(--bs-secondary-color);font-size:90%}
label{display:block;margin-top:.8em;font-weight:bold}#task-form{max-width:40em}
.table td.done,.done{color:var(--bs-success)}.table td.failed,.failed{color:var(--bs-danger)}.error{color:var(--bs-danger);white-space:pre-wrap}
#result{white-space:pre-wrap}"""


def _hub_prefix():
    """The hub's URL prefix (``/hub/`` under the default base URL), for its stylesheet,
    logo and pages."""
    return os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub/"


def _page(title, body, username=None, prefix=""):
    hub = _hub_prefix()
    user = (f"<span class='navbar-text me-2'>{escape(username)}</span>"
            f"<a class='btn btn-sm btn-outline-dark' href='{hub}logout'>Logout</a>") if username else ""
    nav = (f"<nav class='navbar navbar-expand-sm bg-body-tertiary mb-4'><div class='container-fluid'>"
           f"<a class='navbar-brand' href='{hub}home'><img src='{hub}logo' alt='Hub home' class='jpy-logo' "
           f"style='height:28px'></a><ul class='navbar-nav me-auto'>"
           f"<li class='nav-item'><a class='nav-link' href='{hub}home'>Home</a></li>"
           f"<li class='nav-item'><a class='nav-link' href='{prefix or './'}'>Tasks</a></li></ul>{user}</div></nav>")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1.0'>"
            f"<link rel='stylesheet' href='{hub}static/css/style.min.css'><style>{STYLE}</style></head>"
            f"<body>{nav}<div class='container'>{body}</div></body></html>")


def _when(ts):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else ""


def history(runs, prefix):
    rows = []
    for r in runs:
        links = " ".join(f"<a class='output' href='{prefix}api/runs/{r['id']}/outputs/{escape(n)}'>{escape(n)}</a>"
                         for n in (r.get("published") or {}))
        kind = f"batch of {r['summary']['total']}" if r.get("kind") == "batch" else "run"
        rows.append(f"<tr data-run='{r['id']}'><td>{_when(r['created'])}</td><td>{escape(r['task'])}</td><td>{kind}</td>"
                    f"<td class='status {escape(r['status'])}'>{escape(r['status'])}</td><td>{links}</td>"
                    f"<td><a href='{prefix}api/runs/{r['id']}/log'>log</a></td></tr>")
    if not rows:
        return "<p id='no-runs'>No runs yet.</p>"
    return ("<div class='table-responsive'><table id='history' class='table table-sm'><tr><th>started</th><th>task</th>"
            "<th>kind</th><th>status</th><th>outputs</th><th></th></tr>" + "".join(rows) + "</table></div>")


def index(app, username, runs, prefix):
    items = "".join(
        f"<li><a href='{prefix}form/{escape(t.id)}'>{escape(t.spec.title)}</a> <span class='help'>"
        f"({escape(t.id)}, {escape(t.spec.kind)}) {escape(t.spec.description[:160])}</span></li>"
        for t in app.runner.tasks.values())
    return _page("Tasks", f"<h1>Tasks</h1><p>Signed in as {escape(username)}. <a href='{_hub_prefix()}home'>Hub home</a></p>"
                          f"<ul id='tasks'>{items}</ul><h2>Your runs</h2>{history(runs, prefix)}", username, prefix)


def _field(p):
    name = escape(p.name)
    attrs = f"id='p-{name}' name='{name}' data-type='{escape(p.type)}'"
    if p.required:
        attrs += " required"
    default = "" if p.default is None else p.default
    if isinstance(default, list):
        default = ",".join(str(v) for v in default)
    if p.type in ENUMS or p.choices:
        options = "".join(f"<option{' selected' if c == p.default else ''}>{escape(str(c))}</option>" for c in p.choices or [])
        control = f"<select class='form-select' {attrs}>{options}</select>"
    elif p.type == "boolean":
        control = f"<input type='checkbox' class='form-check-input' {attrs}{' checked' if p.default else ''}>"
    elif p.type in ("integer", "float", "double"):
        step = p.step if p.step is not None else (1 if p.type == "integer" else "any")
        bounds = "".join(f" {k}='{v:g}'" for k, v in (("min", p.minimum), ("max", p.maximum)) if v is not None)
        control = f"<input type='number' class='form-control' step='{step}'{bounds} value='{escape(str(default))}' {attrs}>"
    elif p.is_file:
        picker = "home-and-datasets" if p.is_input else "home"
        hint = "home:PATH, dataset:NAME/PATH, gs://..." if p.is_input else "home:PATH (in your home)"
        control = (f"<input type='text' class='form-control' list='files-{picker}' placeholder='{escape(hint)}' data-channel='{escape(p.channel)}' "
                   f"{attrs}>")
    else:
        extra = " placeholder='comma-separated'" if p.type in VECTORS else ""
        control = f"<input type='text' class='form-control' value='{escape(str(default))}'{extra} {attrs}>"
    range_ = ""
    if p.minimum is not None or p.maximum is not None:
        range_ = f" (from {p.minimum:g} to {p.maximum:g})" if None not in (p.minimum, p.maximum) else ""
    return (f"<label for='p-{name}'>{escape(p.label)}{' *' if p.required else ''} <span class='help'>"
            f"{escape(p.description)}{range_}</span></label>{control}")


SCRIPT = """
// JupyterHub checks an XSRF token on every non-navigation request of a cookie-authenticated service
const form = document.getElementById('task-form');
async function pickers() {
  const r = await fetch(PREFIX + 'api/files', {headers: {'X-XSRFToken': XSRF}});
  if (!r.ok) return;
  const files = await r.json();
  for (const [id, items] of Object.entries(files)) {
    const list = document.getElementById('files-' + id);
    for (const item of items) { const o = document.createElement('option'); o.value = item; list.appendChild(o); }
  }
}
pickers();
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const parameters = {};
  for (const el of form.querySelectorAll('[data-type]')) {
    if (el.type === 'checkbox') parameters[el.name] = el.checked;
    else if (el.value !== '') parameters[el.name] = el.type === 'number' ? Number(el.value) : el.value;
  }
  const result = document.getElementById('result');
  result.textContent = 'starting...';
  const r = await fetch(PREFIX + 'api/runs', {method: 'POST', headers: {'Content-Type': 'application/json',
    'X-XSRFToken': XSRF}, body: JSON.stringify({task: TASK, parameters})});
  const body = await r.json();
  if (!r.ok) { result.className = 'error'; result.textContent = body.message; return; }
  result.className = ''; result.textContent = 'run ' + body.id + ': ' + body.status;
  result.dataset.run = body.id;
  while (true) {
    await new Promise(ok => setTimeout(ok, 500));
    const s = await (await fetch(PREFIX + 'api/runs/' + body.id, {headers: {'X-XSRFToken': XSRF}})).json();
    result.textContent = 'run ' + body.id + ': ' + s.status + (s.error ? '\\n' + s.error : '');
    if (!['queued', 'running'].includes(s.status)) {
      result.dataset.status = s.status;
      for (const name of Object.keys(s.published || {})) {
        const a = document.createElement('a'); a.className = 'output'; a.textContent = ' ' + name;
        a.href = PREFIX + 'api/runs/' + body.id + '/outputs/' + name; result.appendChild(a);
      }
      break;
    }
  }
});
"""


def form(task, runs, prefix, xsrf, username=None):
    import json

    fields = "".join(_field(p) for p in task.spec.parameters)
    script = (f"const PREFIX = {json.dumps(prefix)}; const TASK = {json.dumps(task.id)}; "
              f"const XSRF = {json.dumps(xsrf)};" + SCRIPT)
    body = (f"<p><a href='{prefix}'>All tasks</a></p><h1>{escape(task.spec.title)}</h1>"
            f"<p class='help'>{escape(task.spec.description)}</p>"
            f"<p class='help'>Spec: <a href='{prefix}api/tasks/{escape(task.id)}'>JSON</a>, "
            f"<a href='{prefix}api/tasks/{escape(task.id)}/xml'>original</a></p>"
            f"<form id='task-form'>{fields}<datalist id='files-home-and-datasets'></datalist>"
            f"<datalist id='files-home'></datalist><p class='mt-3'><button type='submit' id='run' class='btn btn-jupyter'>Run</button></p></form>"
            f"<pre id='result'></pre><h2>Run history</h2>{history(runs, prefix)}<script>{script}</script>")
    return _page(task.spec.title, body, username, prefix)


def pickable_files(policy, app, limit=200, timeout=5):
    """``{"home": [...], "home-and-datasets": [...]}``: locations the pickers offer."""
    home = []
    for root, dirs, files in os.walk(policy.home):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in sorted(files):
            if not f.startswith("."):
                home.append("home:" + os.path.relpath(os.path.join(root, f), policy.home))
        if len(home) >= limit:
            break
    import dataclasses
    from concurrent.futures import ThreadPoolExecutor, wait

    from oggmhub.tasks.execution import _filesystem

    def listing(name):
        fs, root = _filesystem({"kind": "dataset", "dataset": dataclasses.asdict(app.catalog.datasets[name]), "path": ""})
        return [f"dataset:{name}/" + p[len(root):].lstrip("/") for p in sorted(fs.find(root, maxdepth=3))[:limit]]

    pool = ThreadPoolExecutor(max_workers=4)
    futures = [pool.submit(listing, name) for name in sorted(app.catalog.datasets)]
    wait(futures, timeout=timeout)  # an unreachable dataset offers nothing rather than holding the form up
    pool.shutdown(wait=False, cancel_futures=True)
    datasets = [item for f in futures if f.done() and not f.exception() for item in f.result()]
    return {"home": home[:limit], "home-and-datasets": (home + datasets)[: 2 * limit]}
