"""The environment picker shared by both backends' spawners.

A mixin for JupyterHub ``Spawner`` subclasses: it reads the catalog, renders the picker
(kubespawner's profile form template), turns form data and REST API bodies into a
validated :class:`~oggmhub.choice.SpawnChoice` through JupyterHub's
``apply_user_options`` hook, and hands it to the backend's :meth:`apply_choice`.
Backends differ only in what ``apply_choice`` and ``start`` do.
"""

from __future__ import annotations

import copy
import functools

import html

import jinja2
from sqlalchemy.orm import object_session
from tornado import web
from traitlets import default
from traitlets.config import LoggingConfigurable

from oggmhub.cohorts import model as cohorts
from oggmhub.catalog import cached_catalog
from oggmhub.catalog_setting import catalog_path
from oggmhub.choice import options_from_form, profile_list, resolve_choice
from oggmhub.launch.config import launch_settings
from oggmhub.launch.resolution import on_demand_resolver
from oggmhub.limits import cap_options, install_option_cap
from oggmhub.usage import budgets as usage_budgets, projects as usage_projects
from oggmhub.usage.settings import usage_settings


def _applying_choice_first(start):
    """``start`` (a coroutine method) preceded by the spawner's ``ensure_choice_applied()``."""
    @functools.wraps(start)
    async def start_with_the_choice(self, *args, **kwargs):
        await self.ensure_choice_applied()
        return await start(self, *args, **kwargs)

    start_with_the_choice.applies_choice_first = True
    return start_with_the_choice


class CohortAccessError(web.HTTPError):
    """A cohort member's spawn refused (outside the window, over a limit); shown as it is."""

    def __init__(self, message):
        super().__init__(403, "%s", message, reason="Not allowed by your cohort")
        self.message = self.jupyterhub_message = message

    def __str__(self):
        return self.message


_DATASETS_TEMPLATE = """
<div class="form-group" id="oggmhub-datasets">
  <h3>Datasets</h3>
  <p>Read-only. Those included with the chosen environment are always mounted; add others here.</p>
  {%- for d in datasets %}
  {%- set inc = included.get(d.name, []) %}
  <div class="checkbox oggmhub-dataset" data-included-in="{{ inc | map(attribute=0) | join(' ') }}"><label>
    <input type="checkbox" name="datasets" value="{{ d.name }}"{% if d.name in chosen %} checked{% endif %}>
    {{ d.title }}{% if inc %} <span class="label label-info oggmhub-included">included with {{ inc | map(attribute=1) | join(', ') }}</span>{% endif %}
    {%- if d.description %} <small>{{ d.description }}</small>{% endif %}
  </label></div>
  {%- endfor %}
</div>
<script>
(function () {
  // a dataset the chosen environment mounts anyway: shown as included, not as an extra
  var box = document.getElementById("oggmhub-datasets");
  var form = box.closest("form") || document;
  function chosen() {
    var r = form.querySelector("input[name=profile]:checked") || form.querySelector("input[name=profile]");
    return r ? r.value : "";
  }
  box.querySelectorAll(".oggmhub-dataset input").forEach(function (input) {
    input.dataset.own = input.checked ? "1" : "";  // the user's own choice, kept across switches
    input.addEventListener("change", function () { input.dataset.own = input.checked ? "1" : ""; });
  });
  function update() {
    var env = chosen();
    box.querySelectorAll(".oggmhub-dataset").forEach(function (row) {
      var input = row.querySelector("input"), label = row.querySelector(".oggmhub-included");
      var inc = (row.dataset.includedIn || "").split(" ").indexOf(env) >= 0;
      input.checked = inc || input.dataset.own === "1";
      input.disabled = inc;  // not sent: the environment mounts it anyway
      row.classList.toggle("oggmhub-dataset-included", inc);
      if (label) { label.style.display = inc ? "" : "none"; }
    });
  }
  form.querySelectorAll("input[name=profile]").forEach(function (r) { r.addEventListener("change", update); });
  update();
})();
</script>
"""


def render_picker(profiles, user_options=None, datasets=(), included=None):
    """Render kubespawner's picker template for ``profiles`` (see choice.profile_list),
    followed by checkboxes to add ``datasets`` (catalog Dataset objects).

    ``included`` maps a dataset's name to ``[(environment, display name), ...]`` of the
    environments that mount it by default: for those it shows as included (checked and
    fixed), not as an extra. A dataset every offered environment includes is not offered.

    Both backends show this same form; the last choice in ``user_options`` is
    pre-selected.
    """
    profiles = [
        {**p, "profile_options": {
            name: {**opt, "unlisted_choice": {"enabled": False}}
            for name, opt in p["profile_options"].items()
        }}
        for p in profiles
    ]
    env = jinja2.Environment(loader=jinja2.PackageLoader("kubespawner", "templates"), autoescape=True)
    env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    user_options = user_options or {}
    html = env.get_template("form.html").render(profile_list=profiles, user_options=user_options)
    included = included or {}
    slugs = {p["slug"] for p in profiles}
    datasets = [d for d in datasets if not slugs or not slugs <= {e for e, _ in included.get(d.name, [])}]
    if datasets:
        html += env.from_string(_DATASETS_TEMPLATE).render(
            datasets=datasets, chosen=user_options.get("datasets") or [], included=included,
        )
    return html


class CatalogPickerMixin(LoggingConfigurable):
    """Environment, size and GPU choices from the catalog, validated on the hub."""

    @property
    def catalog_path(self):
        """The catalog's path: ``c.Catalog.path`` (:mod:`oggmhub.catalog_setting`)."""
        return catalog_path(self.config)

    def __init__(self, **kwargs):
        install_option_cap()  # spawn options are capped before JupyterHub stores them (once per process)
        super().__init__(**kwargs)

    #: the methods that start a server; each applies the validated choice before its body runs
    START_METHODS = ("start", "_start")

    def __init_subclass__(cls, **kwargs):
        """The contract every backend keeps, kept here rather than remembered by each: a
        ``start()`` (or KubeSpawner's ``_start()``) a spawner class defines first applies the
        validated choice (:meth:`ensure_choice_applied`), so a direct ``start()`` that skipped
        JupyterHub's options step still starts what was chosen, validated."""
        super().__init_subclass__(**kwargs)
        for name in cls.START_METHODS:
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "applies_choice_first", False):
                setattr(cls, name, _applying_choice_first(method))

    # the resolved choice of the current (or last) spawn; None before the first
    choice = None
    _applied_options = None

    @property
    def catalog(self):
        return cached_catalog(self.catalog_path)

    # the cohort materials of the current (or last) spawn (cohorts.Materials objects)
    cohort_materials = ()

    def cohort_policy(self):
        """The user's :class:`~oggmhub.cohorts.model.MemberPolicy` now, or None for a non-member."""
        return cohorts.member_policy(cohorts.user_cohorts(getattr(self, "user", None)))

    def allowed_environments(self):
        """The environments (name -> allowed sizes, None: all) this user may pick, or None for all."""
        policy = self.cohort_policy()
        return None if policy is None else policy.environments

    def max_gpus(self):
        """The most GPUs one of this user's servers may have, or None for no limit."""
        policy = self.cohort_policy()
        return None if policy is None else policy.limits["gpus"]

    def on_demand_datasets(self):
        """Sources outside the catalog this hub's admin allows (``c.Launch.allowed_sources``)."""
        return on_demand_resolver(launch_settings(self.config).allowed_sources)

    def check_cohort_access(self, policy):
        """Raise :class:`CohortAccessError` if the user's cohorts refuse this spawn."""
        if policy is None:
            return
        if policy.refusal:
            raise CohortAccessError(policy.refusal)
        others = [s for s in getattr(self.user, "spawners", {}).values() if s is not self and s.active]
        if len(others) >= policy.limits["servers"]:
            raise CohortAccessError(
                f"your cohort allows {policy.limits['servers']} server(s) at once and you have "
                f"{len(others)} running; stop one first"
            )

    def apply_cohort(self, policy):
        """Add the member's limits to the session; backends also pull the materials."""
        self.environment = {**self.environment, **policy.session_env()}
        self.cohort_materials = policy.materials

    def picker_profile_list(self, spawner=None):
        """The catalog as kubespawner's profile_list (for the picker template)."""
        return profile_list(self.catalog, self.allowed_environments(), self.max_gpus())

    @default("options_form")
    def _default_options_form(self):
        return type(self)._render_picker  # called with the spawner, when the form is shown

    def _render_picker(self):
        policy = self.cohort_policy()
        if policy is not None and policy.refusal:
            return f'<div class="alert alert-warning" id="oggmhub-cohort-refusal">{html.escape(policy.refusal)}</div>'
        catalog = self.catalog
        included = {name: [(e.name, e.display_name) for e in catalog.environments.values() if name in e.datasets]
                    for name in catalog.datasets}
        projects = usage_projects.picker_html(self.user_projects(), (self.user_options or {}).get("project", ""))
        return projects + render_picker(self.picker_profile_list(), self.user_options, list(catalog.datasets.values()),
                                        included)

    def user_projects(self):
        """The projects this user may charge a session to (:mod:`oggmhub.usage.projects`)."""
        names = [c.name for c in cohorts.user_cohorts(getattr(self, "user", None))]
        return usage_projects.user_projects(self.catalog, getattr(getattr(self, "user", None), "name", ""), names)

    @default("options_from_form")
    def _default_options_from_form(self):
        return self._catalog_options_from_form

    def _catalog_options_from_form(self, formdata):
        formdata = dict(formdata)
        project = formdata.pop(usage_projects.OPTION, None)
        options = options_from_form(self.catalog, formdata, self.allowed_environments(), self.max_gpus())
        return {**options, usage_projects.OPTION: project[-1]} if project else options

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return type(self)._apply_catalog_choice

    async def _apply_catalog_choice(self, user_options):
        """JupyterHub's apply_user_options hook: validate, then let the backend apply.

        JupyterHub saved the request's options before calling this; a refusal puts the
        previous ones back (:mod:`oggmhub.limits`), so a refused request is not replayed.
        """
        saved = getattr(getattr(self, "orm_spawner", None), "oggmhub_options_saved", None)
        try:
            await self._validate_and_apply(cap_options(user_options) if isinstance(user_options, dict) else user_options)
        except BaseException:
            if saved is not None:
                self._restore_options(saved[0])
            raise
        finally:
            if getattr(self, "orm_spawner", None) is not None:
                self.orm_spawner.oggmhub_options_saved = None

    def _restore_options(self, previous):
        previous = dict(previous or {})
        self.user_options = previous
        self.orm_spawner.user_options = previous
        session = object_session(self.orm_spawner)
        if session is not None:
            session.commit()
        self.log.info("%s: refused server options not kept; the previous ones stay", getattr(self, "_log_name", "?"))

    async def _validate_and_apply(self, user_options):
        policy = self.cohort_policy()
        self.check_cohort_access(policy)
        options = dict(user_options) if isinstance(user_options, dict) else user_options
        requested = options.pop(usage_projects.OPTION, None) if isinstance(options, dict) else None
        choice = resolve_choice(
            self.catalog, options,
            None if policy is None else policy.environments,
            None if policy is None else policy.limits["gpus"],
            on_demand=self.on_demand_datasets(),
        )
        project = self.check_usage(choice, requested, policy)
        canonical = {**choice.user_options, **({usage_projects.OPTION: project} if project else {})}
        # store the canonical form, so that the picker pre-selects it next time
        if user_options != canonical:
            self.user_options = canonical
            if getattr(self, "orm_spawner", None) is not None:
                self.orm_spawner.user_options = canonical
        self.choice = choice
        self.apply_choice(choice)
        self.cohort_materials = ()
        if policy is not None:
            self.apply_cohort(policy)
        self._applied_options = dict(self.user_options)

    def check_usage(self, choice, requested_project, policy):
        """The project this session charges (400 if it is not the user's), after checking
        that no budget of the user's is used up (403 with the budget's sentence): before
        anything is created (:mod:`oggmhub.usage`)."""
        user = getattr(self, "user", None)
        names = [c.name for c in cohorts.user_cohorts(user)]
        project = usage_projects.choose_project(self.catalog, getattr(user, "name", ""), names, requested_project)
        settings = usage_settings(self.config)
        found = usage_budgets.catalog_budgets(self.catalog)
        if settings.enabled and found and user is not None:
            current = list(policy.cohorts) if policy is not None else []
            store = settings.store_in(getattr(self, "data_dir", None))  # the local spawner's, else c.Usage.db_path
            usage_budgets.check_start(found, store, user.name, current, project)
        return project

    async def ensure_choice_applied(self):
        """Apply the choice if the hub did not run apply_user_options (e.g. direct start());
        every start method runs it first (see ``__init_subclass__``)."""
        if self._applied_options != self.user_options or self.choice is None:
            await self._apply_catalog_choice(self.user_options or {})

    _base_settings = None

    def base_settings(self, names):
        """The configured values of traits ``names``, snapshotted before the first choice.

        Every choice is applied on top of this base, so nothing from an earlier choice
        (a GPU, a dataset) survives into the next spawn of the same spawner object.
        """
        if self._base_settings is None:
            self._base_settings = {name: copy.deepcopy(getattr(self, name)) for name in names}
        return self._base_settings
