"""The environment picker shared by both backends' spawners.

A mixin for JupyterHub ``Spawner`` subclasses: it reads the catalog, renders the picker
(kubespawner's profile form template), turns form data and REST API bodies into a
validated :class:`~oggmhub.choice.SpawnChoice` through JupyterHub's
``apply_user_options`` hook, and hands it to the backend's :meth:`apply_choice`.
Backends differ only in what ``apply_choice`` and ``start`` do.
"""

from __future__ import annotations

import jinja2
from traitlets import Unicode, default
from traitlets.config import LoggingConfigurable

from .catalog import cached_catalog, default_catalog_path
from .choice import options_from_form, profile_list, resolve_choice


_DATASETS_TEMPLATE = """
<div class="form-group" id="oggmhub-datasets">
  <h3>Add datasets</h3>
  <p>Mounted read-only next to the environment's own.</p>
  {%- for d in datasets %}
  <div class="checkbox"><label>
    <input type="checkbox" name="datasets" value="{{ d.name }}"{% if d.name in chosen %} checked{% endif %}>
    {{ d.title }}{% if d.description %} <small>{{ d.description }}</small>{% endif %}
  </label></div>
  {%- endfor %}
</div>
"""


def render_picker(profiles, user_options=None, datasets=()):
    """Render kubespawner's picker template for ``profiles`` (see choice.profile_list),
    followed by checkboxes to add ``datasets`` (catalog Dataset objects).

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
    if datasets:
        html += env.from_string(_DATASETS_TEMPLATE).render(
            datasets=datasets, chosen=user_options.get("datasets") or []
        )
    return html


class CatalogPickerMixin(LoggingConfigurable):
    """Environment, size and GPU choices from the catalog, validated on the hub."""

    catalog_path = Unicode(
        config=True,
        help="""Path of the catalog YAML file (environments, sizes, GPU variants, datasets).

        Defaults to $OGGMHUB_CATALOG, else hub_config/catalog.yaml relative to the hub's
        working directory. The file is validated when first read and re-read when it
        changes; a broken edit refuses spawns with the catalog's errors rather than
        starting something half-configured.
        """,
    )

    @default("catalog_path")
    def _default_catalog_path(self):
        return default_catalog_path()

    # the resolved choice of the current (or last) spawn; None before the first
    choice = None
    _applied_options = None

    @property
    def catalog(self):
        return cached_catalog(self.catalog_path)

    def allowed_environments(self):
        """The environment names this user may pick, or None for all of them."""
        return None

    def picker_profile_list(self, spawner=None):
        """The catalog as kubespawner's profile_list (for the picker template)."""
        return profile_list(self.catalog, self.allowed_environments())

    @default("options_form")
    def _default_options_form(self):
        return type(self)._render_picker  # called with the spawner, when the form is shown

    def _render_picker(self):
        return render_picker(
            self.picker_profile_list(), self.user_options, list(self.catalog.datasets.values())
        )

    @default("options_from_form")
    def _default_options_from_form(self):
        return self._catalog_options_from_form

    def _catalog_options_from_form(self, formdata):
        return options_from_form(self.catalog, formdata, self.allowed_environments())

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return type(self)._apply_catalog_choice

    async def _apply_catalog_choice(self, user_options):
        """JupyterHub's apply_user_options hook: validate, then let the backend apply."""
        choice = resolve_choice(self.catalog, user_options, self.allowed_environments())
        # store the canonical form, so that the picker pre-selects it next time
        if user_options != choice.user_options:
            self.user_options = choice.user_options
            if getattr(self, "orm_spawner", None) is not None:
                self.orm_spawner.user_options = choice.user_options
        self.choice = choice
        self.apply_choice(choice)
        self._applied_options = dict(self.user_options)

    async def ensure_choice_applied(self):
        """Apply the choice if the hub did not run apply_user_options (e.g. direct start())."""
        if self._applied_options != self.user_options or self.choice is None:
            await self._apply_catalog_choice(self.user_options or {})

    def apply_choice(self, choice):
        """Set the backend's settings from ``choice``; implemented by each backend."""
        raise NotImplementedError
